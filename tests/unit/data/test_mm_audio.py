"""llmpipe.data.mm_audio without a model: decoding and resampling keep the pitch, vision.audio_sampling_rate remakes
the feature extractor with the encoder's window, and an unreadable file is a MediaError that names it."""
from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("soundfile")
pytest.importorskip("scipy")


def test_resampling_keeps_the_pitch_and_the_rate_sets_the_samples(tmp_path):
    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_audio import (
        AudioTokens,
        at_rate,
        decode,
        rate_settings,
        token_count,
    )
    from llmpipe.data.mm_synthetic_audio import tone
    from llmpipe.models.audio_builtin import feature_extractor

    wav = tone(440.0, 1.0, 8000)
    raw, rate = decode({"bytes": wav})
    assert (rate, len(raw)) == (8000, 8000)
    fe16 = feature_extractor()
    at16, at8 = AudioTokens(fe16, 16000), AudioTokens(at_rate(fe16, 8000), 8000)
    up = at16.samples(wav)
    assert len(up) == 16000 and len(at8.samples(wav)) == 8000   # vision.audio_sampling_rate sets the samples
    assert abs(np.fft.rfftfreq(len(up), 1 / 16000)[np.abs(np.fft.rfft(up)).argmax()] - 440.0) < 2.0
    # the same seconds per mel frame at either rate: the encoder's 200-frame window, the same audio tokens
    assert at8.feature_extractor.nb_max_frames == fe16.nb_max_frames == 200
    assert at8.count(at8.samples(wav)) == at16.count(up) == token_count(100)
    assert at8.features([at8.samples(wav)])["input_features"].shape[-1] == 200
    assert rate_settings(fe16.to_dict(), 7) is None   # a window that cannot keep its frames
    with pytest.raises(MediaError, match="broken.wav"):
        (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
        decode("broken.wav", tmp_path)
