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

Storage (`storage`, sparse update only; `facerec.heads.class_store`): centers and momentum in
fp32, bf16 or fp16, with or without momentum, in memory or memory-mapped files. With a compact
dtype the catch-up stays exact in this sense: a row read at step b is the value stored at its
last update a, mapped through the steps a+1..b-1 in fp32 arithmetic (coefficients from the
float64 segment tree), and it is rounded to the stored dtype only when written back after a
sampled step - once per sampled step, not once per step as a dense update in that dtype would.
Negatives are drawn without O(C) work per step (`class_sampling`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from facerec.config import ClassStorageConfig, class_storage_config
from facerec.distributed import current, shard_range
from facerec.errors import ConfigError
from facerec.heads.base import Head, OptimizerStep
from facerec.heads.class_sampling import sample_classes
from facerec.heads.class_store import ClassRows
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
        storage: Mapping[str, Any] | ClassStorageConfig | None = None,
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
        spec = storage if isinstance(storage, ClassStorageConfig) else class_storage_config(dict(storage or {}))
        if update == "dense" and spec != ClassStorageConfig():
            raise ConfigError("partial_fc: storage options apply to update 'sparse' only (dense keeps fp32 parameters)")
        self.storage = spec
        init = torch.Generator().manual_seed(seed * 1_000_003 + ctx.rank)
        tag = f"partial_fc.rank{ctx.rank}of{ctx.world_size}"
        self.rows = ClassRows(self.num_local, embedding_size, spec, tag, seed=self.sampler_seed(seed, ctx.rank) + 1)
        self.rows.initialize(init, 0.01)
        if update == "dense":
            self.weight = nn.Parameter(self.rows.weight)
            self.rows = None
        else:
            self._expose_rows()
            self.register_buffer("last_step", torch.full((self.num_local,), -1, dtype=torch.long))
        self.history = StepHistory()  # sparse update: every step's lr, momentum, decay
        self.sampler = torch.Generator().manual_seed(self.sampler_seed(seed, ctx.rank))
        self._sampled: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

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

    # The sparse update's rows live in `self.rows` (any dtype, memory or file), not in module
    # buffers; `weight` and `momentum_buffer` name them as attributes and state-dict keys.
    def _expose_rows(self) -> None:
        self.__dict__["weight"] = self.rows.weight
        self.__dict__["momentum_buffer"] = self.rows.momentum

    def _apply(self, fn: Any, recurse: bool = True) -> PartialFC:
        super()._apply(fn, recurse)
        if self.rows is not None:
            self.rows.apply(fn, self.last_step.device)
            self._expose_rows()
        return self

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        if self.rows is not None:  # before the buffers: the key order of earlier versions
            destination.update({prefix + key: value for key, value in self.rows.arrays().items()})
        super()._save_to_state_dict(destination, prefix, keep_vars)

    # The sampling generator is part of the state: resuming continues the same negatives.
    def get_extra_state(self) -> dict[str, Any]:
        state = {
            "sampler": self.sampler.get_state(),
            "class_range": (self.class_start, self.class_end),
            "history": self.history.state_dict(),
            "seed": self.seed,
        }
        if self.rows is not None:
            state["rounding_noise"] = self.rows.noise.state_dict()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if tuple(state["class_range"]) != (self.class_start, self.class_end):
            raise ValueError(
                f"checkpoint shard holds classes {state['class_range']}, this rank holds "
                f"{(self.class_start, self.class_end)}: convert the checkpoint for this world size"
            )
        self.sampler.set_state(state["sampler"])
        self.history.load_state_dict(state["history"])
        if self.rows is not None and "rounding_noise" in state:
            self.rows.noise.load_state_dict(state["rounding_noise"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before margins were modules: their combined margin kept no buffers
        for name, buf in self.margin.named_buffers():
            state_dict.setdefault(f"{prefix}margin.{name}", buf.detach().clone())
        if self.rows is not None:
            missing_keys, error_msgs = args[2], args[4]
            for key in self.rows.arrays():
                if prefix + key not in state_dict:
                    missing_keys.append(prefix + key)
                    continue
                try:
                    self.rows.load(key, state_dict.pop(prefix + key))
                except ValueError as exc:
                    error_msgs.append(f"{prefix}{exc}")
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
            positives = torch.unique(local[in_shard]).cpu()
            index = sample_classes(self.num_local, keep, positives, self.sampler).to(device)
        # column of each row's class among the sorted sampled classes (no O(C) position map)
        position = torch.searchsorted(index, local).clamp_max(len(index) - 1)
        target = torch.where(in_shard, position, torch.full_like(labels, -1))
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
        if buf is None:  # no momentum kept: plain SGD for the class layer
            momentum, nesterov = 0.0, False
            rows.add_(grad, alpha=-lr)
        else:
            buf.mul_(momentum).add_(grad)
            rows.add_(grad.add_(buf, alpha=momentum) if nesterov else buf, alpha=-lr)
        self.rows.scatter(index, rows, buf)  # rounds to the stored dtype (consumes rows and buf)
        self.last_step[index] = len(self.history)
        self.history.append(lr, momentum, weight_decay, nesterov)
        centers.grad = None

    @torch.no_grad()
    def _current_rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows `index` of the centers and momentum (None when not kept), in the working
        dtype, brought up to the last completed step."""
        rows = self._rows_buffer(len(index))
        buf = self._momentum_rows_buffer(len(index)) if self.rows.momentum is not None else None
        self.rows.gather(index, rows, buf)
        self._catch_up(self.last_step[index.to(self.last_step.device)].to(rows.device), rows, buf)
        return rows, buf

    def _catch_up(self, last: torch.Tensor, rows: torch.Tensor, buf: torch.Tensor | None) -> None:
        """Apply in place, to rows last updated at steps `last`, the steps they missed since."""
        now = len(self.history)
        if not bool((last < now - 1).any()):
            return
        # rows sampled on the same step share their catch-up map: few distinct ranges per step
        since, inverse = torch.unique(last.cpu(), return_inverse=True)
        coeff = self.history.product(since + 1, torch.full_like(since, now))
        coeff = coeff.to(device=rows.device, dtype=rows.dtype)[inverse.to(rows.device)]
        a, b, c, d = (coeff[:, i, j, None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
        if buf is None:  # momentum 0 on every step: b = 0 and the buffer plays no part
            rows.mul_(a)
            return
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
            index = torch.arange(start, min(start + chunk, self.num_local), device=self.last_step.device)
            rows, buf = self._current_rows(index)
            self.rows.scatter(index, rows, buf)
            self.last_step[index] = len(self.history) - 1

    # Gathered rows go to buffers kept between steps: allocating r*C*d floats afresh every step
    # costs page faults that dominate the step on a CPU.
    def _rows_buffer(self, n: int) -> torch.Tensor:
        return self._buffer("_rows", n)

    def _momentum_rows_buffer(self, n: int) -> torch.Tensor:
        return self._buffer("_momentum_rows", n)

    def _buffer(self, name: str, n: int) -> torch.Tensor:
        buf = self.__dict__.get(name)
        device, dtype = self.last_step.device, self.rows.work_dtype  # mmap rows travel to the module's device
        if buf is None or len(buf) < n or buf.device != device or buf.dtype != dtype:
            buf = torch.empty(max(n, 1), self.rows.weight.shape[1], dtype=dtype, device=device)
            self.__dict__[name] = buf
        return buf[:n]
