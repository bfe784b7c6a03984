"""Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine").

The class-center matrix is sharded over the ranks of the process group (rank r holds a
contiguous block of classes). Each step:

1. the embeddings (and labels) of the global batch are all-gathered, with gradient;
2. each rank samples its classes: every positive (a class of the global batch that it holds)
   plus random negatives up to `sample_rate` x its class count; sample_rate = 1 keeps all
   classes and is exactly the full softmax;
3. cosine logits against the sampled centers, the margin (`facerec.heads.margins`) on the
   target logit inside autograd (exact gradient), scale s;
4. a softmax cross-entropy whose normalizer is built with an all-reduce of the row maxima and
   of the sums of exponentials, so each rank only ever holds its own logits.

The loss is the mean over the global batch, identical on every rank.

Margins: `margin: {name: adaface, margin: 0.4, ...}` (or just `margin: adaface`) takes any
margin of `facerec.heads.margins.MARGINS` with its options; without it, `m1, m2, m3` give the
combined margin (default ArcFace, m2 = 0.5). The statistics a margin keeps (AdaFace's norm mean
and deviation, CurricularFace's mean target cosine) are computed over the gathered GLOBAL batch,
identical on every rank, so the sharded head equals the single-process one; a margin that reads
every row's target cosine gets them with one all-reduce of a batch-sized vector. A regularizer
on the norms (MagFace) is taken on each rank's own rows, so summed backbone gradients count it
once, and its value is all-reduced into the loss.

Updates (`update`):
- 'sparse' (default): the centers are not optimizer parameters; `sparse_step` applies SGD with
  momentum and weight decay to the sampled rows only, and a row that was skipped for some steps
  first catches up exactly: the momentum and weight decay those steps would have applied to it
  form a product of 2x2 maps on (w, buf), read from a segment tree (`lazy_sgd.StepHistory`).
  The result equals torch.optim.SGD over every row with zero gradient for unsampled rows (the
  dense update below) up to float rounding, at O(r * C_local * (d + log T)) per step.
- 'dense': the centers are an nn.Parameter handled by the run's optimizer, which (like
  arcface_torch's PartialFC_V2) receives a dense gradient and rewrites every row each step
  (momentum, weight decay): O(C_local * d) whatever the sample rate. Kept to compare against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from facerec.distributed import current, shard_range
from facerec.heads.base import Head, OptimizerStep
from facerec.heads.lazy_sgd import StepHistory
from facerec.heads.margins import CombinedMargin, Margin, build_margin
from facerec.heads.registry import HEADS


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of equal-sized blocks; backward sums every rank's gradient for the whole
    batch and returns this rank's block."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor (same shape on every rank); gradients flow back."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return labels
    parts = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def _all_reduce(x: torch.Tensor, op: Any) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=op)
    return x


def scaled_cosines(unit_emb: torch.Tensor, rows: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * cosines between unit embeddings (N, d) and unnormalized rows (S, d), S >> N."""
    return ScaledCosines.apply(unit_emb, rows, scale)


class ScaledCosines(torch.autograd.Function):
    """L = s (E W^T) diag(1/|w_i|), with the gradient written out so that the large (S, d) side
    costs one product and two in-place passes (autograd through a row normalization makes
    several (S, d) temporaries):

        dL/dW = s diag(1/|w|) G^T E - diag(s <(G^T E)_i, w_i> / |w_i|^3) W
        dL/dE = s G diag(1/|w|) W
    """

    @staticmethod
    def forward(ctx: Any, unit_emb: torch.Tensor, rows: torch.Tensor, scale: float) -> torch.Tensor:
        inv_norm = torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-12).reciprocal()
        ctx.save_for_backward(unit_emb, rows, inv_norm)
        ctx.scale = scale
        return torch.mm(unit_emb, rows.t()).mul_(scale * inv_norm)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        unit_emb, rows, inv_norm = ctx.saved_tensors
        scaled_inv = ctx.scale * inv_norm
        grad_emb = torch.mm(grad * scaled_inv, rows) if ctx.needs_input_grad[0] else None
        grad_rows = None
        if ctx.needs_input_grad[1]:
            grad_rows = torch.mm(grad.t(), unit_emb)
            dots = torch.bmm(grad_rows.unsqueeze(1), rows.unsqueeze(2)).view(-1)  # row-wise, no temporary
            grad_rows.mul_(scaled_inv[:, None]).addcmul_(rows, (-dots * scaled_inv * inv_norm * inv_norm)[:, None])
        return grad_emb, grad_rows, None


class ShardedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over rows whose logits are split column-wise across ranks.

    `target` is the column of the true class on this rank, or -1 when another rank holds it.
    The gradient w.r.t. the local logits is (softmax - onehot) / rows: no communication needed.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.detach()
        row_max = _all_reduce(logits.max(1).values.clone(), dist.ReduceOp.MAX)
        has = target >= 0
        target_logit = torch.zeros_like(row_max)
        target_logit[has] = logits[has, target[has]]
        _all_reduce(target_logit, dist.ReduceOp.SUM)
        prob = (logits - row_max[:, None]).exp_()
        denom = _all_reduce(prob.sum(1), dist.ReduceOp.SUM)
        prob.div_(denom[:, None])
        ctx.save_for_backward(prob, target)
        return (denom.log() + row_max - target_logit).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # prob is this function's own buffer and backward runs once: it becomes the gradient
        prob, target = ctx.saved_tensors
        rows = torch.nonzero(target >= 0).squeeze(1)
        prob[rows, target[rows]] -= 1
        return prob.mul_(grad / len(prob)), None


@HEADS.register("partial_fc")
class PartialFC(Head):
    """The sharded class layer of the module docstring (`update`: 'sparse' or 'dense')."""

    sharded = True
    owns_update = True  # cleared for update='dense', where the optimizer owns the centers

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
        scale: float = 64.0,
        m1: float | None = None,
        m2: float | None = None,
        m3: float | None = None,
        margin: str | Mapping[str, Any] | Margin | None = None,
        update: str = "sparse",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if update not in ("sparse", "dense"):
            raise ValueError(f"partial_fc update must be 'sparse' or 'dense', got '{update}'")
        ctx = current()
        self.rank, self.world_size = ctx.rank, ctx.world_size
        self.class_start, self.class_end = shard_range(num_classes, ctx.rank, ctx.world_size)
        self.num_classes, self.num_local = num_classes, self.class_end - self.class_start
        self.sample_rate, self.scale, self.update, self.seed = sample_rate, scale, update, seed
        self.margin = self._margin(m1, m2, m3, margin)
        self.owns_update = update == "sparse"
        weight = torch.empty(self.num_local, embedding_size)
        init = torch.Generator().manual_seed(seed * 1_000_003 + ctx.rank)
        weight.normal_(0, 0.01, generator=init)
        if update == "dense":
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("momentum_buffer", torch.zeros_like(weight))
            self.register_buffer("last_step", torch.full((self.num_local,), -1, dtype=torch.long))
        self.history = StepHistory()  # sparse update: every step's lr, momentum, decay
        self.sampler = torch.Generator().manual_seed(self.sampler_seed(seed, ctx.rank))
        self._sampled: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _margin(
        m1: float | None, m2: float | None, m3: float | None, margin: str | Mapping[str, Any] | Margin | None
    ) -> Margin:
        if margin is None:
            return CombinedMargin(1.0 if m1 is None else m1, 0.5 if m2 is None else m2, m3 or 0.0)
        if (m1, m2, m3) != (None, None, None):
            raise ValueError("partial_fc takes either 'margin' or the combined margin's m1, m2, m3, not both")
        return build_margin(margin)

    @staticmethod
    def sampler_seed(seed: int, rank: int) -> int:
        return seed * 1_000_003 + 7919 + rank

    # The sampling generator is part of the state: resuming continues the same negatives.
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.get_state(),
            "class_range": (self.class_start, self.class_end),
            "history": self.history.state_dict(),
            "seed": self.seed,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if tuple(state["class_range"]) != (self.class_start, self.class_end):
            raise ValueError(
                f"checkpoint shard holds classes {state['class_range']}, this rank holds "
                f"{(self.class_start, self.class_end)}: convert the checkpoint for this world size"
            )
        self.sampler.set_state(state["sampler"])
        self.history.load_state_dict(state["history"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before margins were modules: their combined margin kept no buffers
        for name, buf in self.margin.named_buffers():
            state_dict.setdefault(f"{prefix}margin.{name}", buf.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args)

    @classmethod
    def sharded_state_keys(cls) -> tuple[str, ...]:
        return ("weight", "momentum_buffer", "last_step")  # the dense update keeps only 'weight'

    @classmethod
    def reshard_state(cls, states: Sequence[Mapping[str, Any]], world_size: int) -> list[dict[str, Any]]:
        """As `Head.reshard_state`; each rank's extra state gets its class range and a fresh
        sampling generator (the one a new run of that rank starts with)."""
        out = super().reshard_state(states, world_size)
        num_classes = sum(len(s["weight"]) for s in states)
        for rank, state in enumerate(out):
            extra = dict(state["_extra_state"])
            extra["class_range"] = shard_range(num_classes, rank, world_size)
            extra["sampler"] = torch.Generator().manual_seed(cls.sampler_seed(extra.get("seed", 0), rank)).get_state()
            state["_extra_state"] = extra
        return out

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the local centers used this step, sorted; local target column per row or -1)."""
        device = labels.device
        in_shard = (labels >= self.class_start) & (labels < self.class_end)
        local = (labels - self.class_start).clamp(0, self.num_local - 1)
        if self.sample_rate >= 1.0:
            index = torch.arange(self.num_local, device=device)
        else:
            keep = max(math.ceil(self.sample_rate * self.num_local), 1)
            priority = torch.rand(self.num_local, generator=self.sampler).to(device)
            priority[local[in_shard]] = 2.0  # positives always win
            keep = max(keep, int((priority > 1.0).sum()))
            index = torch.topk(priority, keep).indices.sort().values
        position = torch.full((self.num_local,), -1, dtype=torch.long, device=device)
        position[index] = torch.arange(len(index), device=device)
        target = torch.where(in_shard, position[local], torch.full_like(labels, -1))
        return index, target

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = gather_with_grad(embeddings)
        all_labels = gather_labels(labels)
        index, target = self.sample(all_labels)
        if self.update == "dense":
            centers = self.weight[index]
        else:
            centers, momentum = self._current_rows(index)
            centers.requires_grad_(self.training)
            if self.training:
                self._sampled = (index, centers, momentum)
        norms = torch.linalg.vector_norm(emb, dim=1)
        logits = scaled_cosines(emb / norms.clamp_min(1e-12)[:, None], centers, self.scale)
        rows = torch.nonzero(target >= 0).squeeze(1)
        cols = target[rows]
        logits = self._apply_margin(logits, rows, cols, norms)
        loss = ShardedSoftmaxCrossEntropy.apply(logits, target)
        regularizer = self.margin.regularizer(torch.linalg.vector_norm(embeddings, dim=1))
        if regularizer is None:
            return loss
        # this rank's rows only (summed backbone gradients count each row once); value over all
        local = regularizer.sum() / len(emb)
        total = _all_reduce(local.detach().clone(), dist.ReduceOp.SUM)
        return loss + local + (total - local.detach())

    def _apply_margin(
        self, logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, norms: torch.Tensor
    ) -> torch.Tensor:
        """The margined target logits put into `logits` (rows of the global batch whose class this
        rank holds: `rows`, at columns `cols`), in place unless the margin changes negatives."""
        cos_target = logits[rows, cols] / self.scale
        every = None  # every row's target cosine, identical on all ranks
        if self.margin.uses_batch_targets or self.margin.adjusts_negatives:
            every = torch.zeros(len(logits), dtype=logits.dtype, device=logits.device)
            every[rows] = cos_target.detach()
            _all_reduce(every, dist.ReduceOp.SUM)
        if self.training:
            self.margin.observe(norms.detach(), every)
        psi = self.margin.target(cos_target, norms[rows])
        if every is not None and self.margin.adjusts_negatives:
            with torch.no_grad():
                every_target = self.margin.target(every, norms)
            logits = self.scale * self.margin.negatives(logits / self.scale, every_target)
        return logits.index_put_((rows, cols), (self.scale * psi).to(logits.dtype))  # in place: no copy

    def after_optimizer_step(self, step: OptimizerStep) -> None:
        """The sparse update of the rows sampled by the last forward pass."""
        self.sparse_step(step.lr, step.momentum, step.weight_decay, step.grad_scale, step.nesterov)

    @torch.no_grad()
    def sparse_step(
        self,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        grad_scale: float = 1.0,
        nesterov: bool = False,
    ) -> None:
        """SGD (momentum, weight decay, as torch.optim.SGD) on the rows sampled by the last forward
        pass; their missed steps were caught up there. `grad_scale`: the loss scale of fp16
        training, divided out of the gradient here."""
        if self.update != "sparse" or self._sampled is None:
            return
        index, centers, buf = self._sampled
        self._sampled = None
        if centers.grad is None:
            return
        grad = centers.grad  # consumed here: modified in place
        if grad_scale != 1.0:  # fp16 loss scaling: unscale, and skip an overflow step as the optimizer does
            grad.div_(grad_scale)
            if not torch.isfinite(grad).all():
                centers.grad = None
                return
        rows = centers.detach()  # the sampled rows, current up to the previous step
        if weight_decay:
            grad.add_(rows, alpha=weight_decay)
        buf.mul_(momentum).add_(grad)
        rows.add_(grad.add_(buf, alpha=momentum) if nesterov else buf, alpha=-lr)
        self.momentum_buffer.index_copy_(0, index, buf)
        self.weight.index_copy_(0, index, rows)
        self.last_step[index] = len(self.history)
        self.history.append(lr, momentum, weight_decay, nesterov)
        centers.grad = None

    @torch.no_grad()
    def _current_rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows `index` of the centers and momentum, brought up to the last completed step."""
        rows = torch.index_select(self.weight, 0, index, out=self._rows_buffer(len(index)))
        buf = torch.index_select(self.momentum_buffer, 0, index, out=self._momentum_rows_buffer(len(index)))
        self._catch_up(self.last_step[index], rows, buf)
        return rows, buf

    def _catch_up(self, last: torch.Tensor, rows: torch.Tensor, buf: torch.Tensor) -> None:
        """Apply in place, to rows last updated at steps `last`, the steps they missed since."""
        now = len(self.history)
        if not bool((last < now - 1).any()):
            return
        # rows sampled on the same step share their catch-up map: few distinct ranges per step
        since, inverse = torch.unique(last.cpu(), return_inverse=True)
        coeff = self.history.product(since + 1, torch.full_like(since, now))
        coeff = coeff.to(device=rows.device, dtype=rows.dtype)[inverse.to(rows.device)]
        a, b, c, d = (coeff[:, i, j, None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        new_rows = torch.mul(rows, a, out=self._buffer("_new_rows", len(rows)))
        new_rows.addcmul_(buf, b)
        buf.mul_(d).addcmul_(rows, c)
        rows.copy_(new_rows)

    @torch.no_grad()
    def synchronize(self, chunk: int = 65536) -> None:
        """Bring every row up to date (sparse update), e.g. before reading `weight` directly."""
        if self.update != "sparse":
            return
        for start in range(0, self.num_local, chunk):
            index = torch.arange(start, min(start + chunk, self.num_local), device=self.weight.device)
            rows, buf = self._current_rows(index)
            self.weight.index_copy_(0, index, rows)
            self.momentum_buffer.index_copy_(0, index, buf)
            self.last_step[index] = len(self.history) - 1

    # Gathered rows go to buffers kept between steps: allocating r*C*d floats afresh every step
    # costs page faults that dominate the step on a CPU.
    def _rows_buffer(self, n: int) -> torch.Tensor:
        return self._buffer("_rows", n)

    def _momentum_rows_buffer(self, n: int) -> torch.Tensor:
        return self._buffer("_momentum_rows", n)

    def _buffer(self, name: str, n: int) -> torch.Tensor:
        buf = self.__dict__.get(name)
        if buf is None or len(buf) < n or buf.device != self.weight.device:
            buf = torch.empty(max(n, 1), self.weight.shape[1], dtype=self.weight.dtype, device=self.weight.device)
            self.__dict__[name] = buf
        return buf[:n]
