"""A clean model state for attribution: gradients on, hooks and modes restored, under the model's lock.

Attribution needs gradients and (for Grad-CAM) hooks on a layer of the model, while the dashboard
shares one model object between all sessions (st.cache_resource). Every attribution therefore runs
under the loaded model's own lock (`LoadedModel.lock`, which the inference loop takes around its forward
passes too, so a Grad-CAM hook never fires on another thread's prediction), and restores on the way
out, also after an exception, the parameters' requires_grad flags, every module's train/eval mode, the
model's hooks and its BatchNorm layers' forwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wildvision.predict import LoadedModel

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
)


def hook_counts(model: nn.Module) -> dict[str, int]:
    """How many hooks of each kind are registered anywhere in `model` (for checks and tests)."""
    counts = dict.fromkeys(_HOOK_DICTS, 0)
    for module in model.modules():
        for name in _HOOK_DICTS:
            counts[name] += len(getattr(module, name, {}) or {})
    return counts


class _EvalBatchNorm(torch.autograd.Function):
    """Eval-mode batch norm whose backward is only the input gradient: grad * weight / sqrt(var + eps).

    The forward is F.batch_norm itself, so outputs (and so probabilities and maps) do not change; on the
    CPU PyTorch's general backward took longer than the forward pass and most of Saliency's time.
    """

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
        scale = torch.rsqrt(norm.running_var + norm.eps)
        ctx.scale = (scale if norm.weight is None else scale * norm.weight)[None, :, None, None]
        return nn.functional.batch_norm(inputs, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def _frozen_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The BatchNorm2d layers that normalise with stored statistics in eval mode (all of them in torchvision)."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None]


@contextmanager
def attribution_session(loaded: LoadedModel) -> Iterator[None]:
    """Hold the model's lock and give it a clean gradient-enabled, eval-mode state; restore it afterwards.

    Parameters stop requiring gradients while we explain (attribution only needs gradients with respect
    to the input or a layer's output, and frozen weights save memory and time), and BatchNorm layers run
    as `_EvalBatchNorm`; their own flags, the modules' train/eval modes, the hook tables and the
    BatchNorm modules' forwards are put back exactly, also when attribution fails.
    """
    model = loaded.model
    with loaded.lock:
        parameters = list(model.parameters())
        flags = [p.requires_grad for p in parameters]
        modes = [(module, module.training) for module in model.modules()]
        hooks = [(module, name, list(getattr(module, name).keys())) for module in model.modules() for name in _HOOK_DICTS if hasattr(module, name)]
        norms = _frozen_norms(model)
        forwards = [(norm, norm.__dict__.get("forward")) for norm in norms]  # an instance-level forward, if any
        try:
            for parameter in parameters:
                parameter.requires_grad_(False)
            model.eval()
            for norm in norms:
                norm.forward = lambda inputs, norm=norm: _EvalBatchNorm.apply(inputs, norm)
            with torch.inference_mode(False), torch.enable_grad():
                yield
        finally:
            for parameter, flag in zip(parameters, flags):
                parameter.requires_grad_(flag)
            for module, training in modes:
                module.training = training
            for norm, forward in forwards:
                if forward is None:
                    norm.__dict__.pop("forward", None)
                else:
                    norm.forward = forward
            for module, name, keys in hooks:  # captum removes its hooks; this catches any that a failure left
                table = getattr(module, name)
                for key in [k for k in table if k not in keys]:
                    del table[key]
