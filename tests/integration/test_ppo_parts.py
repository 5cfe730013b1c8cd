"""PPO's arithmetic, the reward HTTP client against a real local server, and the paired/unpaired KTO helpers:
fast checks of the pieces the (slow) end-to-end PPO/KTO tests rely on."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

torch = pytest.importorskip("torch")

from llmpipe.training import ppo_core as core  # noqa: E402
from llmpipe.training.ppo_rewards import ApiReward, RewardApiError  # noqa: E402


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])                      # the last position is padding
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=0.9)
    d2 = 1.0 - 0.1                                           # last real token: no next value
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2, a1 = d2, d1 + 0.9 * d2
    a0 = d0 + 0.9 * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2, 0.0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.1, 0.0]]), atol=1e-6)


def test_token_rewards_put_the_score_on_the_last_response_token():
    logp, ref = torch.tensor([[-1.0, -1.0, -1.0]]), torch.tensor([[-1.5, -1.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = core.token_rewards(torch.tensor([3.0]), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 3.0, 0.0]]))


def test_clipped_objective_stops_pushing_past_the_clip_range():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    far = torch.tensor([[0.5, -0.5]], requires_grad=True)   # ratio e^0.5 > 1.2 and e^-0.5 < 0.8: both clipped
    pg, vf, stats = core.ppo_losses(far, old, torch.zeros(1, 2), torch.zeros(1, 2), adv, torch.zeros(1, 2), mask)
    pg.backward()
    assert torch.allclose(far.grad, torch.zeros_like(far.grad)) and stats["clipfrac"] == 1.0
    near = torch.tensor([[0.05, -0.05]], requires_grad=True)
    pg, _, stats = core.ppo_losses(near, old, torch.zeros(1, 2), torch.zeros(1, 2), adv, torch.zeros(1, 2), mask)
    pg.backward()
    assert near.grad[0, 0] < 0 < near.grad[0, 1] and stats["clipfrac"] == 0.0   # raise good, lower bad


def test_adaptive_kl_follows_the_target():
    ctl = core.AdaptiveKL(0.2, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) > 0.2             # too far from the reference: penalise more
    ctl = core.AdaptiveKL(0.2, target=6.0, horizon=100)
    assert ctl.update(1.0, n_steps=10) < 0.2
    assert ctl.update(6.0, n_steps=10) == pytest.approx(ctl.value)


def test_whiten_and_running_moments():
    x, mask = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]])
    w = core.whiten(x, mask)
    assert core.masked_mean(w, mask).abs() < 1e-6 and w[0, 3] == 0
    kept = core.whiten(x, mask, shift_mean=False)
    assert core.masked_mean(kept, mask) == pytest.approx(2.0, abs=1e-5)
    m = core.RunningMoments()
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0])
    m.update(a), m.update(b)
    both = torch.cat([a, b]).double()
    assert m.mean == pytest.approx(both.mean().item()) and m.std == pytest.approx(both.std(unbiased=False).item())


def test_response_mask_keeps_the_end_token():
    from llmpipe.training.ppo_rollout import response_mask

    r = torch.tensor([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5]])
    assert response_mask(r, eos_id=2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_kto_pair_loss_and_kto_ranking_accuracy():
    pytest.importorskip("trl")
    from llmpipe.training.kto import ranking_accuracy
    from llmpipe.training.kto_pair import kto_pair_losses

    c, r = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 1.0])
    losses = kto_pair_losses(c, r, beta=0.5)
    kl_c, kl_r = 2.0, 0.0                                  # batch means, clamped at 0
    want = [1 - torch.sigmoid(torch.tensor(0.5 * (x - kl_r))) for x in (1.0, 3.0)] + \
           [1 - torch.sigmoid(torch.tensor(0.5 * (kl_c - x))) for x in (-1.0, 1.0)]
    assert torch.allclose(losses, torch.stack(want))
    assert ranking_accuracy([0.0, 0.0], [True, False]) == 0.5            # untrained: ties
    assert ranking_accuracy([2.0, 1.0, 0.0], [True, False, True]) == 0.5
    assert ranking_accuracy([2.0, 1.0, 3.0], [True, False, True]) == 1.0


class _Scorer(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
        body = {"scores": [float(len(t)) for t in texts]} if self.path == "/score" else {"oops": 1}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scorer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_api_reward_scores_rendered_conversations(server):
    api = ApiReward(server + "/score")
    api.check()
    convs = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "abc"}]]
    assert api.score(convs, render=lambda c: c[-1]["content"]) == [3.0]


def test_api_reward_errors_are_clear(server):
    with pytest.raises(RewardApiError, match="expected"):
        ApiReward(server + "/other").check()
    import socket

    with socket.socket() as s:                              # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RewardApiError, match="cannot reach the reward endpoint"):
        ApiReward(f"http://127.0.0.1:{port}/score", timeout=5).check()
