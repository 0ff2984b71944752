"""E-prop: online learning in a recurrent network of leaky integrate-and-fire neurons without BPTT.

Bellec et al. 2020, "A solution to the learning dilemma for recurrent networks of spiking neurons" (Nature
Communications 11:3625). With α = e^{−dt/τ_m}, κ = e^{−dt/τ_out}, v_th' = v_th − v_rest:

    v_j^t = v_rest + α (v_j^{t−1} − v_rest) + Σ_i W^in_ji x_i^t + Σ_i W^rec_ji z_i^{t−1} − z_j^{t−1} v_th'
    z_j^t = H(v_j^t − v_th)                  (the membrane leaks toward v_rest; reset by subtraction)
    y_k^t = κ y_k^{t−1} + Σ_j W^out_kj z_j^t + b_k,        E = ½ Σ_t Σ_k (y_k^t − y*_k^t)²

Eligibility traces (forward in time, local to each synapse; presynaptic p^t = [x^t; z^{t−1}]):
    p̄_i^t = α p̄_i^{t−1} + p_i^t                                              (per presynaptic neuron)
    ψ_j^t = (γ/v_th') max(0, 1 − |v_j^t − v_th| / v_th')                      (pseudo-derivative)
    ē_ji^t = κ ē_ji^{t−1} + ψ_j^t p̄_i^t                                       (per synapse)
    L_j^t = Σ_k W^out_kj (y_k^t − y*_k^t)                                     (symmetric feedback)
    g_ji += L_j^t ē_ji^t  every step,   W ← W − η g  at the end of the sequence (or every `update_every` steps)

Per input/recurrent synapse the learner stores exactly three float32 values — weight W, eligibility ē and the
learning-signal accumulator g = Σ_t L ē — 12 bytes (for one stream; each extra parallel stream adds 4 bytes
of eligibility). Everything else is per neuron. The readout learns with its exact local gradient
Σ_t (y − y*) z̄^κ (rate η_out). With W^rec = 0 and symmetric feedback, g equals the BPTT gradient (reset
treated as a constant, same pseudo-derivative), which the tests check. Rates multiply gradients summed over
time, so they scale like 1/T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
    lr: float = 1e-4  # input and recurrent synapses
    lr_out: float = 5e-6  # readout (its gradient is ~1/(1 − κ) larger)
    update_every: int | None = None  # steps between weight updates; None → once per sequence
    w_in_scale: float = 1.0  # weights drawn N(0, scale²/fan_in) · v_th'
    w_rec_scale: float = 0.5
    seed: int = 0


class EPropLIF(nn.Module):
    """Recurrent LIF network with a leaky linear readout, trained online by e-prop (see module docstring).

    forward(x (B, T, n_in)) → y (B, T, n_out) runs the network without learning.
    learn(x, target) runs it while updating all three weight matrices online and returns the loss.
    Buffers `weight`, `elig`, `acc` are (n_rec, n_in + n_rec): input synapses first, then recurrent ones.
    """

    weight: Tensor
    elig: Tensor
    acc: Tensor
    w_out: Tensor
    b_out: Tensor
    acc_out: Tensor
    acc_b: Tensor

    def __init__(self, config: EPropConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = c = make_config(EPropConfig, config, overrides)
        g = torch.Generator().manual_seed(c.seed)
        vth = c.v_th - c.v_rest
        w_in = torch.randn(c.n_rec, c.n_in, generator=g) * c.w_in_scale * vth / math.sqrt(c.n_in)
        w_rec = torch.randn(c.n_rec, c.n_rec, generator=g) * c.w_rec_scale * vth / math.sqrt(c.n_rec)
        self.register_buffer("weight", torch.cat([w_in, w_rec.fill_diagonal_(0.0)], dim=1))
        self.register_buffer("elig", torch.zeros(c.n_rec, c.n_in + c.n_rec))  # ē, per synapse
        self.register_buffer("acc", torch.zeros(c.n_rec, c.n_in + c.n_rec))  # g = Σ L ē, per synapse
        self.register_buffer("w_out", torch.randn(c.n_out, c.n_rec, generator=g) / math.sqrt(c.n_rec))
        self.register_buffer("b_out", torch.zeros(c.n_out))
        self.register_buffer("acc_out", torch.zeros(c.n_out, c.n_rec))
        self.register_buffer("acc_b", torch.zeros(c.n_out))

    @property
    def w_in(self) -> Tensor:
        return self.weight[:, : self.config.n_in]

    @property
    def w_rec(self) -> Tensor:
        return self.weight[:, self.config.n_in :]

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
        """Everything the learner keeps per input/recurrent synapse."""
        return {"weight": self.weight, "eligibility": self.elig, "learning_signal": self.acc}

    def _membrane(self, pre: Tensor, v: Tensor, z: Tensor) -> Tensor:
        c = self.config
        return (
            c.v_rest
            + self.alpha * (v - c.v_rest)
            + torch.matmul(pre, self.weight.T)
            - z * (c.v_th - c.v_rest)
        )

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
            v = self._membrane(torch.cat([x[:, t], z], dim=-1), v, z)
            z = (v >= c.v_th).to(v.dtype)
            y = self.kappa * y + torch.matmul(z, self.w_out.T) + self.b_out
            ys.append(y)
            zs.append(z)
            vs.append(v)
        return torch.stack(ys, 1), torch.stack(zs, 1), torch.stack(vs, 1)

    @torch.no_grad()
    def learn(self, x: Tensor, target: Tensor, apply: bool = True) -> float:
        """One online pass over x (B, T, n_in) with targets (B, T, n_out); returns E/(B·T) (before updates).

        With apply=False the weights stay unchanged and `acc`, `acc_out`, `acc_b` hold the accumulated
        e-prop estimates of ∂E/∂W, ∂E/∂W_out, ∂E/∂b.
        """
        c = self.config
        b, steps = x.shape[:2]
        a, k = self.alpha, self.kappa
        v = x.new_full((b, c.n_rec), c.v_rest)
        z = x.new_zeros(b, c.n_rec)
        y = x.new_zeros(b, c.n_out)
        pbar = x.new_zeros(b, c.n_in + c.n_rec)  # presynaptic traces [x̄; z̄]
        zk = x.new_zeros(b, c.n_rec)  # κ-filtered spikes (readout gradient)
        bk = 0.0
        elig = x.new_zeros(b, c.n_rec, c.n_in + c.n_rec)
        acc, acc_out, acc_b = self.acc, self.acc_out, self.acc_b
        for buf in (acc, acc_out, acc_b):
            buf.zero_()
        loss = x.new_zeros(())
        for t in range(steps):
            w_out = self.w_out  # may change within the sequence when update_every is set
            pre = torch.cat([x[:, t], z], dim=-1)  # [x^t; z^{t−1}]
            pbar = a * pbar + pre
            v = self._membrane(pre, v, z)
            z = (v >= c.v_th).to(v.dtype)
            elig = k * elig + self.pseudo_derivative(v).unsqueeze(-1) * pbar.unsqueeze(-2)
            y = k * y + torch.matmul(z, w_out.T) + self.b_out
            err = y - target[:, t]  # (B, n_out)
            loss = loss + 0.5 * (err * err).sum()
            ls = torch.matmul(err, w_out)  # learning signal L_j = Σ_k W_out_kj err_k, (B, n_rec)
            acc.add_((ls.unsqueeze(-1) * elig).sum(0))
            zk = k * zk + z
            bk = k * bk + 1.0
            acc_out.add_(torch.matmul(err.T, zk))
            acc_b.add_(err.sum(0) * bk)
            if apply and c.update_every is not None and (t + 1) % c.update_every == 0:
                self.apply_update()
        if apply and (c.update_every is None or steps % c.update_every):
            self.apply_update()
        if b == 1:
            self.elig.copy_(elig[0])
        return float(loss) / (b * steps)

    def apply_update(self) -> None:
        """W ← W − η g for all three weight matrices, then clear the accumulators."""
        c = self.config
        self.weight.sub_(c.lr * self.acc)
        self.w_rec.fill_diagonal_(0.0)  # no autapses
        self.w_out -= c.lr_out * self.acc_out
        self.b_out -= c.lr_out * self.acc_b
        for acc in (self.acc, self.acc_out, self.acc_b):
            acc.zero_()
