"""dpo and kto on image rows (llmpipe.data.mm_pairwise) with TRL's own trainers, the policy a vision-language model.

TRL 1.16's vision path needs a composite processor (not buildable here: no torchvision) and has no precomputed
reference (TRL refuses precompute_ref_log_probs for vision data). llmpipe keeps TRL's text path instead — TRL
tokenizes the rows, whose ``<image>`` placeholders are already expanded into image tokens — and adds the images:

- the published ``images`` column is renamed (:data:`COLUMN`), so TRL takes the rows as text rows, and kept through
  TRL's column filter;
- :class:`ImagePreferenceCollator` wraps TRL's text collator and adds the family's image inputs
  (llmpipe.data.mm_plugins; Qwen2-VL: ``pixel_values``, ``image_grid_thw`` and ``mm_token_type_ids``, 1 on image
  tokens, from which the model computes its M-RoPE positions per row). A DPO batch holds the chosen rows, then the rejected ones: each example's images
  come twice, in that order. A KTO batch also gets ``KL_mm_token_type_ids`` (``KL_token_type_ids``) for its mismatched KL rows (the prompt's
  images with another example's completion);
- TRL's DPO and KTO losses call the policy and the reference with every model input of the batch, so the images
  reach both forwards; KTO's reference log-probs for the reference stage (``compute_ref_log_probs``), which TRL
  computes from the ids alone, get the images through :class:`_WithImages`.

The reference stage (llmpipe.training.ref_compute) builds the same trainer and collator, so its log-probs are those
of the image rows. Padding-free batches are not used with images: the train log says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmpipe.errors import UserError
from llmpipe.training.collators import column_names

PUBLISHED = "images"
COLUMN = "image_pngs"   # what TRL sees: not "images", which would send it down its processor-only vision path
IMAGE_KEYS = ("pixel_values", "image_grid_thw", "image_sizes")   # image-processor outputs a forward may take
TYPE_KEYS = ("mm_token_type_ids", "token_type_ids")               # the image-token masks (Qwen-VL, Gemma 3)


def has_images(dataset) -> bool:
    return dataset is not None and PUBLISHED in column_names(dataset)


class ImagePreferenceCollator:
    """TRL's preference collator plus the images of the batch (see the module docstring); ``mm`` is the model's
    llmpipe.data.mm_plugins.ImageTokens."""

    def __init__(self, text_collator, mm, image_token_id: int, paired: bool):
        self.text, self.mm, self.image_token_id, self.paired = text_collator, mm, image_token_id, paired

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        from llmpipe.data.mm_media import from_png

        images = [from_png(b) for f in features for b in (f.get(COLUMN) or [])]
        batch = self.text([{k: v for k, v in f.items() if k != COLUMN} for f in features])
        if self.paired:   # rows: every chosen sequence, then every rejected one
            images = images + images
        batch.update(self.mm.batch_inputs(images, batch["input_ids"], self.image_token_id))
        kind = self.mm.plugin.type_ids
        if kind and "KL_input_ids" in batch:
            batch[f"KL_{kind}"] = (batch["KL_input_ids"] == self.image_token_id).long()
        return batch


class _WithImages:
    """``model`` called with the batch's images added (for TRL calls that pass the ids only)."""

    def __init__(self, model, inputs: dict):
        self.model, self.inputs = model, inputs

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args, input_ids=None, **kw):
        kl = "KL_input_ids" in self.inputs and input_ids is self.inputs["KL_input_ids"]
        for k in TYPE_KEYS:
            if k in self.inputs:
                kw.setdefault(k, self.inputs[f"KL_{k}" if kl else k])
        for k in IMAGE_KEYS:
            if k in self.inputs:
                kw.setdefault(k, self.inputs[k])
        return self.model(*args, input_ids=input_ids, **kw)


def image_trainer(base: type) -> type:
    """``base`` (TRL's DPOTrainer / KTOTrainer or a subclass) that keeps the image column and scores the reference
    with the images."""

    class ImagePreference(base):
        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if COLUMN not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, COLUMN]

        def compute_ref_log_probs(self, model, inputs):
            if any(k in inputs for k in IMAGE_KEYS):
                model = _WithImages(model, inputs)
            return super().compute_ref_log_probs(model, inputs)

    ImagePreference.__name__ = ImagePreference.__qualname__ = base.__name__
    return ImagePreference


def text_collator(base: type, args, pad_token_id: int):
    """TRL's own text collator of ``base``'s family, as its constructor would build it."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference, KTOTrainer

    if issubclass(base, KTOTrainer):
        return DataCollatorForUnpairedPreference(pad_token_id=pad_token_id, max_length=args.max_length,
                                                 pad_to_multiple_of=args.pad_to_multiple_of)
    return DataCollatorForPreference(pad_token_id=pad_token_id, max_length=args.max_length,
                                     truncation_mode=args.truncation_mode, pad_to_multiple_of=args.pad_to_multiple_of)


def adapt(base: type, args, tokenizer, load_dir, train_ds, eval_ds, log=print):
    """(trainer class, train data, eval data, extra trainer keywords) for image rows; unchanged for text rows."""
    if not has_images(train_ds):
        return base, train_ds, eval_ds, {}
    from trl import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer

    from llmpipe.data.mm_plugins import load

    if not issubclass(base, (DPOTrainer, KTOTrainer)):   # pre-flight refuses these (vision-stage); never silently
        raise UserError(f"{base.__name__} does not pass images to the model; image rows train with dpo's "
                        "DPOTrainer losses (sigmoid, ipo, hinge, ...), kto_pair or train.stage=kto")

    mm = load(Path(load_dir) / "tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    paired = not issubclass(base, KTOTrainer)
    collator = ImagePreferenceCollator(text_collator(base, args, tokenizer.pad_token_id), mm,
                                       tokenizer.convert_tokens_to_ids(mm.image_token), paired)
    args.truncation_mode = "keep_start"   # the images sit in the prompt: only answers may be cut
    rename = (lambda ds: ds.rename_column(PUBLISHED, COLUMN) if has_images(ds) else ds)
    log("image rows: pixel values reach the policy and the reference forward (padded batches, no padding-free)")
    return image_trainer(base), rename(train_ds), rename(eval_ds), {"data_collator": collator}
