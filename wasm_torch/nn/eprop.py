"""E-prop: online learning in a recurrent network of leaky integrate-and-fire neurons without BPTT.

Bellec et al. 2020, "A solution to the learning dilemma for recurrent networks of spiking neurons" (Nature
Communications 11:3625). With α = e^{−dt/τ_m}, κ = e^{−dt/τ_out}, v_th' = v_th − v_rest:

    v_j^t = v_rest + α (v_j^{t−1} − v_rest) + Σ_i W^in_ji x_i^t + Σ_i W^rec_ji z_i^{t−1} − z_j^{t−1} v_th'
    z_j^t = H(v_j^t − v_th)                  (the membrane leaks toward v_rest; reset by subtraction)
    y_k^t = κ y_k^{t−1} + Σ_j W^out_kj z_j^t + b_k,        E = ½ Σ_t Σ_k (y_k^t − y*_k^t)²

Eligibility traces (forward in time, local to each synapse):
    x̄_i^t = α x̄_i^{t−1} + x_i^t,   z̄_i^t = α z̄_i^{t−1} + z_i^{t−1}          (presynaptic, per neuron)
    ψ_j^t = (γ/v_th') max(0, 1 − |v_j^t − v_th| / v_th')                      (pseudo-derivative)
    ē_ji^t = κ ē_ji^{t−1} + ψ_j^t · (x̄_i^t or z̄_i^t)                         (per synapse)
    L_j^t = Σ_k B_jk (y_k^t − y*_k^t),   B = W^outᵀ (symmetric) or fixed random
    g_ji += L_j^t ē_ji^t  every step,   W ← W − η g  at the end of the sequence (or every `update_every` steps)

Per input/recurrent synapse the learner stores exactly three float32 values — weight W, eligibility ē and the
learning-signal accumulator g = Σ_t L ē — 12 bytes (for one stream; each extra parallel stream adds 4 bytes
of eligibility). Everything else is per neuron. The readout learns with its exact local gradient
Σ_t (y − y*) z̄^κ. With W^rec = 0 and symmetric feedback, g equals the BPTT gradient (reset treated as
constant, the same pseudo-derivative), which the tests check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._util import make_config


@dataclass(frozen=True)
class EPropConfig:
    n_in: int = 20
    n_rec: int = 50
    n_out: int = 1
    dt: float = 1.0  # ms
    tau_m: float = 20.0  # ms, membrane
    tau_out: float = 20.0  # ms, leaky readout
    v_rest: float = 0.0
    v_th: float = 1.0
    gamma: float = 0.3  # pseudo-derivative dampening
    feedback: Literal["symmetric", "random"] = "symmetric"
    lr: float = 1e-3
    lr_out: float | None = None  # None → lr
    update_every: int | None = None  # steps between weight updates; None → once per sequence
    w_in_scale: float = 1.0  # weights drawn N(0, scale²/fan_in) · v_th'
    w_rec_scale: float = 0.5
    seed: int = 0


class EPropLIF(nn.Module):
    """Recurrent LIF network with a leaky linear readout, trained online by e-prop (see module docstring).

    forward(x (B, T, n_in)) → y (B, T, n_out) runs the network without learning.
    learn(x, target) runs it while updating all three weight matrices online and returns the sequence loss.
    """

    w_in: Tensor
    w_rec: Tensor
    w_out: Tensor
    b_out: Tensor
    feedback: Tensor
    elig_in: Tensor
    elig_rec: Tensor
    acc_in: Tensor
    acc_rec: Tensor
    acc_out: Tensor
    acc_b: Tensor

    def __init__(self, config: EPropConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = c = make_config(EPropConfig, config, overrides)
        g = torch.Generator().manual_seed(c.seed)
        vth = c.v_th - c.v_rest
        self.register_buffer("w_in", torch.randn(c.n_rec, c.n_in, generator=g) * c.w_in_scale * vth / math.sqrt(c.n_in))
        w_rec = torch.randn(c.n_rec, c.n_rec, generator=g) * c.w_rec_scale * vth / math.sqrt(c.n_rec)
        self.register_buffer("w_rec", w_rec.fill_diagonal_(0.0))
        self.register_buffer("w_out", torch.randn(c.n_out, c.n_rec, generator=g) / math.sqrt(c.n_rec))
        self.register_buffer("b_out", torch.zeros(c.n_out))
        self.register_buffer("feedback", torch.randn(c.n_rec, c.n_out, generator=g) / math.sqrt(c.n_out))
        # per-synapse learner state (one stream): eligibility ē and accumulator g next to each weight
        for name, shape in (("in", (c.n_rec, c.n_in)), ("rec", (c.n_rec, c.n_rec))):
            self.register_buffer(f"elig_{name}", torch.zeros(shape))
            self.register_buffer(f"acc_{name}", torch.zeros(shape))
        self.register_buffer("acc_out", torch.zeros(c.n_out, c.n_rec))  # readout gradient accumulators
        self.register_buffer("acc_b", torch.zeros(c.n_out))

    @property
    def alpha(self) -> float:
        return math.exp(-self.config.dt / self.config.tau_m)

    @property
    def kappa(self) -> float:
        return math.exp(-self.config.dt / self.config.tau_out)

    def pseudo_derivative(self, v: Tensor) -> Tensor:
        c = self.config
        vth = c.v_th - c.v_rest
        return c.gamma / vth * torch.clamp(1 - (v - c.v_th).abs() / vth, min=0)

    def synapse_state(self) -> dict[str, Tensor]:
        """Everything the learner keeps per input/recurrent synapse (float32 each)."""
        return {"w_in": self.w_in, "elig_in": self.elig_in, "acc_in": self.acc_in,
                "w_rec": self.w_rec, "elig_rec": self.elig_rec, "acc_rec": self.acc_rec}

    def _neuron_step(self, x_t: Tensor, v: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        vth = c.v_th - c.v_rest
        v = (c.v_rest + self.alpha * (v - c.v_rest) + torch.matmul(x_t, self.w_in.T)
             + torch.matmul(z, self.w_rec.T) - z * vth)
        return v, (v >= c.v_th).to(v.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[0]

    def run(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Outputs (B, T, n_out), spikes (B, T, n_rec) and membrane potentials (B, T, n_rec)."""
        c = self.config
        b = x.shape[0]
        v = x.new_full((b, c.n_rec), c.v_rest)
        z = x.new_zeros(b, c.n_rec)
        y = x.new_zeros(b, c.n_out)
        ys, zs, vs = [], [], []
        for t in range(x.shape[1]):
            v, z = self._neuron_step(x[:, t], v, z)
            y = self.kappa * y + torch.matmul(z, self.w_out.T) + self.b_out
            ys.append(y)
            zs.append(z)
            vs.append(v)
        return torch.stack(ys, 1), torch.stack(zs, 1), torch.stack(vs, 1)

    @torch.no_grad()
    def learn(self, x: Tensor, target: Tensor, apply: bool = True) -> float:
        """One online pass over x (B, T, n_in) with targets (B, T, n_out); returns E/(B·T) before updates.

        With apply=False the weights stay unchanged and `acc_in`, `acc_rec`, `acc_out`, `acc_b` hold the
        accumulated e-prop gradient estimates of E.
        """
        c = self.config
        b = x.shape[0]
        a, k = self.alpha, self.kappa
        v = x.new_full((b, c.n_rec), c.v_rest)
        z = x.new_zeros(b, c.n_rec)
        y = x.new_zeros(b, c.n_out)
        xbar = x.new_zeros(b, c.n_in)
        zbar = x.new_zeros(b, c.n_rec)
        zk = x.new_zeros(b, c.n_rec)  # κ-filtered spikes for the readout gradient
        bk = 0.0
        elig_in = x.new_zeros(b, c.n_rec, c.n_in)
        elig_rec = x.new_zeros(b, c.n_rec, c.n_rec)
        for acc in (self.acc_in, self.acc_rec, self.acc_out, self.acc_b):
            acc.zero_()
        loss = 0.0
        for t in range(x.shape[1]):
            zbar = a * zbar + z  # uses z^{t−1}
            xbar = a * xbar + x[:, t]
            v, z = self._neuron_step(x[:, t], v, z)
            psi = self.pseudo_derivative(v)  # (B, n_rec)
            elig_in = k * elig_in + psi.unsqueeze(-1) * xbar.unsqueeze(-2)
            elig_rec = k * elig_rec + psi.unsqueeze(-1) * zbar.unsqueeze(-2)
            y = k * y + torch.matmul(z, self.w_out.T) + self.b_out
            err = y - target[:, t]  # (B, n_out)
            loss += 0.5 * float((err * err).sum())
            fb = self.w_out.T if c.feedback == "symmetric" else self.feedback
            ls = torch.matmul(err, fb.T)  # learning signal L_j, (B, n_rec)
            self.acc_in += (ls.unsqueeze(-1) * elig_in).sum(0)
            self.acc_rec += (ls.unsqueeze(-1) * elig_rec).sum(0)
            zk = k * zk + z
            bk = k * bk + 1.0
            self.acc_out += torch.matmul(err.T, zk)
            self.acc_b += err.sum(0) * bk
            if apply and c.update_every is not None and (t + 1) % c.update_every == 0:
                self._apply()
        if apply and (c.update_every is None or x.shape[1] % c.update_every):
            self._apply()
        if b == 1:
            self.elig_in.copy_(elig_in[0])
            self.elig_rec.copy_(elig_rec[0])
        return loss / (b * x.shape[1])

    def _apply(self) -> None:
        c = self.config
        lr_out = c.lr if c.lr_out is None else c.lr_out
        self.w_in -= c.lr * self.acc_in
        self.w_rec -= c.lr * self.acc_rec
        self.w_rec.fill_diagonal_(0.0)
        self.w_out -= lr_out * self.acc_out
        self.b_out -= lr_out * self.acc_b
        for acc in (self.acc_in, self.acc_rec, self.acc_out, self.acc_b):
            acc.zero_()
