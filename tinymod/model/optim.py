"""AdamW with torch.optim.AdamW's semantics (Loshchilov & Hutter 2019, decoupled decay).

For each parameter theta with gradient g, at step t = 1, 2, ...:

    theta <- theta * (1 - lr * wd)              decoupled weight decay, before the moments
    m     <- beta1 * m + (1 - beta1) * g        first moment
    v     <- beta2 * v + (1 - beta2) * g^2      second moment
    theta <- theta - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

eps sits outside the square root, after bias correction, exactly as torch computes it.
The state (t and both moments) round-trips through `state_dict` / `load_state_dict`
bit for bit, so a resumed run continues exactly. An optional gradient filter
(`GrokfastEMA`) rewrites the gradients in place before the update; its state travels
with the optimiser's.
"""
import math

from tinymod.model.backend import asarray, namespace


class GrokfastEMA:
    """Grokfast's slow-gradient amplifier (Lee et al. 2024, `gradfilter_ema` in their code),
    applied in place to the gradients before the optimiser sees them:

        mu <- g                                 once, at the first gradient
        mu <- alpha * mu + (1 - alpha) * g      every step, the first included
        g  <- g + lambda * mu

    Each product goes through a scratch buffer, so a step allocates nothing, and the
    operations are the reference's in its order, so the bits are the same."""

    def __init__(self, params, alpha=0.98, lamb=2.0):
        xp = namespace(*params.values())
        self.alpha, self.lamb, self.started = alpha, lamb, False
        self.mu = {name: xp.zeros_like(value) for name, value in params.items()}
        self.scratch = {name: xp.zeros_like(value) for name, value in params.items()}

    def apply(self, grads):
        xp = namespace(*grads.values())
        for name, g in grads.items():
            mu, scratch = self.mu[name], self.scratch[name]
            if not self.started:
                mu[...] = g                                      # the average starts at g
            mu *= self.alpha                                     # mu <- a mu + (1 - a) g
            xp.multiply(g, 1 - self.alpha, out=scratch)
            mu += scratch
            xp.multiply(mu, self.lamb, out=scratch)              # g <- g + lambda mu
            g += scratch
        self.started = True


class AdamW:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0, grad_filter=None):
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.grad_filter = grad_filter
        xp = namespace(*params.values())
        self.t = 0
        self.m = {name: xp.zeros_like(value) for name, value in params.items()}
        self.v = {name: xp.zeros_like(value) for name, value in params.items()}

    def step(self, params, grads):
        """Update `params` in place from `grads` (filtered first, in place, when a filter is set)."""
        if self.grad_filter is not None:
            self.grad_filter.apply(grads)
        xp = namespace(*params.values())
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - beta1 ** self.t)            # bias correction of m
        sqrt_bc2 = math.sqrt(1 - beta2 ** self.t)               # bias correction of v
        for name, theta in params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            theta *= 1 - self.lr * self.weight_decay             # decoupled weight decay
            m *= beta1                                           # m <- b1 m + (1 - b1) g
            m += (1 - beta1) * g
            v *= beta2                                           # v <- b2 v + (1 - b2) g^2
            v += (1 - beta2) * (g * g)
            theta -= step_size * (m / (xp.sqrt(v) / sqrt_bc2 + self.eps))

    def state_dict(self):
        """The state under the checkpoint's `opt_` keys (without the prefix)."""
        state = {"t": self.t}
        state.update({f"m_{name}": value for name, value in self.m.items()})
        state.update({f"v_{name}": value for name, value in self.v.items()})
        if self.grad_filter is not None and self.grad_filter.started:
            state.update({f"gf_{name}": value for name, value in self.grad_filter.mu.items()})
        return state

    def load_state_dict(self, state):
        xp = namespace(*self.m.values())
        self.t = int(state["t"])
        for prefix, moments in (("m", self.m), ("v", self.v)):
            for name, old in moments.items():
                moments[name] = asarray(xp, state[f"{prefix}_{name}"], old.dtype, like=old, copy=True)
        if self.grad_filter is not None and any(key.startswith("gf_") for key in state):
            for name, old in self.grad_filter.mu.items():
                old[...] = asarray(xp, state[f"gf_{name}"], old.dtype, like=old)
            self.grad_filter.started = True
