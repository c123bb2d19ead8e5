"""Remapping tuning (spec sec. 2): knowledge distillation, weight selection and Net2Net widening.

- KD: loss = (1 - alpha) CE(y, s) + alpha T^2 KL(softmax(t / T) || softmax(s / T)), teacher frozen.
- Weight selection: a smaller ViT student starts from teacher tensors, keeping one consistent index
  subset per width dimension (first D_s embedding channels, first h_s heads and first d_s channels of
  each head, first H_s MLP units) and the first L_s (or evenly spaced) blocks.
- Net2Net: the MLP of every block is widened to H' units by replicating units g(j) (g(j) = j for
  j < H, random otherwise) and dividing their outgoing weights by the replica count: the function is
  unchanged (Chen et al. 2016, Net2WiderNet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import require
from tenfold.tuning.common import require_vit, seeded
from tenfold.tuning.options import KDOptions, Net2NetOptions, WeightSelectionOptions
from tenfold.tuning.registry import register_method


# --- knowledge distillation ------------------------------------------------------------------------
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """(1 - alpha) CE(target, s) + alpha T^2 KL(softmax(t/T) || softmax(s/T)) (batch mean)."""
    ce = F.cross_entropy(student_logits, target)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                  log_target=True, reduction="batchmean")
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl


class Distiller(nn.Module):
    """A trainable ``student`` and a frozen ``teacher``; ``forward`` is the student's, ``tuning_loss`` the KD loss."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, alpha: float):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = temperature, alpha
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()
        return self

    def get_classifier(self) -> nn.Module:
        return self.student.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    # timm's model API: the student's (the model that is trained and deployed)
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.student.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.student.forward_head(x, pre_logits=pre_logits)

    def forward_intermediates(self, x: torch.Tensor, *args, **kwargs):
        return self.student.forward_intermediates(x, *args, **kwargs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.student.set_grad_checkpointing(enable)

    @property
    def feature_info(self):
        return self.student.feature_info

    def tuning_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return distillation_loss(self.student(x), teacher_logits, y, self.temperature, self.alpha)


def apply_kd(model: nn.Module, *, teacher: nn.Module | None, temperature: float, alpha: float) -> nn.Module:
    """Distil ``teacher`` into the (fully trainable) student ``model``."""
    require(isinstance(teacher, nn.Module), "teacher", type(teacher).__name__, "a teacher nn.Module (option teacher=)")
    for p in model.parameters():
        p.requires_grad_(True)
    return Distiller(model, teacher, temperature, alpha)


# --- weight selection ------------------------------------------------------------------------------
def block_map(student_depth: int, teacher_depth: int, layers: str) -> list[int]:
    """Teacher block index of each student block: the first L_s, or evenly spaced ones."""
    require(layers in ("first", "even"), "layers", layers, "'first' or 'even'")
    require(student_depth <= teacher_depth, "student depth", student_depth, f"at most the teacher's {teacher_depth}")
    if layers == "first" or student_depth <= 1:
        return list(range(student_depth))
    return [round(i * (teacher_depth - 1) / (student_depth - 1)) for i in range(student_depth)]


def _select(t: torch.Tensor, shape: torch.Size, structured: dict[int, tuple[int, ...]],
            student_groups: dict[int, tuple[int, ...]]) -> torch.Tensor:
    """Slice teacher tensor ``t`` to ``shape``: plain dims keep their first entries; a structured dim is
    viewed as (groups...) in the teacher and student and each group axis keeps its first entries."""
    out = t
    for dim, size in enumerate(shape):
        if dim in structured:
            t_groups, s_groups = structured[dim], student_groups[dim]
            view = out.reshape(out.shape[:dim] + t_groups + out.shape[dim + 1:])
            for k, n in enumerate(s_groups):
                view = view.narrow(dim + k, 0, n)
            out = view.reshape(out.shape[:dim] + (size,) + out.shape[dim + 1:])
        else:
            out = out.narrow(dim, 0, size)
    return out


def select_weights(student: nn.Module, teacher: nn.Module, layers: str = "first",
                   copy_head: bool = False) -> dict[str, torch.Tensor]:
    """The student's initial tensors taken from the teacher (see module docstring)."""
    require_vit(student, "weight-selection")
    require_vit(teacher, "weight-selection (teacher)")
    mapping = block_map(len(student.blocks), len(teacher.blocks), layers)
    hs, ht = student.blocks[0].attn.num_heads, teacher.blocks[0].attn.num_heads
    ds, dt = student.embed_dim // hs, teacher.embed_dim // ht
    require(hs <= ht and ds <= dt, "student heads", f"{hs}x{ds}", f"at most the teacher's {ht} heads x {dt} channels")
    t_state = teacher.state_dict()
    out = {}
    for name, p in student.state_dict().items():
        if name.startswith("head.") and not copy_head:
            continue
        t_name = name
        if name.startswith("blocks."):
            _, idx, rest = name.split(".", 2)
            t_name = f"blocks.{mapping[int(idx)]}.{rest}"
        require(t_name in t_state, "student tensor", name, "a tensor the teacher also has")
        t = t_state[t_name]
        require(t.dim() == p.dim() and all(a <= b for a, b in zip(p.shape, t.shape)), "student tensor",
                f"{name} {tuple(p.shape)}", f"no larger than the teacher's {tuple(t.shape)}")
        structured, groups = {}, {}
        if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
            structured[0], groups[0] = (3, ht, dt), (3, hs, ds)
        if name.endswith("attn.proj.weight"):
            structured[1], groups[1] = (ht, dt), (hs, ds)
        out[name] = _select(t, p.shape, structured, groups).clone()
    return out


def apply_weight_selection(model: nn.Module, *, teacher: nn.Module | None, layers: str,
                           copy_head: bool) -> nn.Module:
    """Initialise the smaller ViT ``model`` from consistent slices of ``teacher``; every parameter trainable."""
    require(isinstance(teacher, nn.Module), "teacher", type(teacher).__name__, "a teacher ViT (option teacher=)")
    tensors = select_weights(model, teacher, layers, copy_head)
    model.load_state_dict(tensors, strict=False)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


# --- Net2Net widening ------------------------------------------------------------------------------
def widen_linear_pair(fc1: nn.Linear, fc2: nn.Linear, width: int, generator: torch.Generator,
                      noise: float = 0.0) -> tuple[nn.Linear, nn.Linear]:
    """Net2WiderNet on fc2(act(fc1 x)): new unit j copies unit g(j); fc2 columns are divided by the counts."""
    old = fc1.out_features
    require(width >= old, "mlp_hidden", width, f"at least the current width {old}")
    g = torch.cat([torch.arange(old), torch.randint(old, (width - old,), generator=generator)])
    counts = torch.bincount(g, minlength=old).to(fc2.weight.dtype)
    new1 = nn.Linear(fc1.in_features, width, bias=fc1.bias is not None).to(fc1.weight)
    new2 = nn.Linear(width, fc2.out_features, bias=fc2.bias is not None).to(fc2.weight)
    with torch.no_grad():
        new1.weight.copy_(fc1.weight[g])
        if noise > 0:
            new1.weight[old:] += noise * torch.randn(width - old, fc1.in_features, generator=generator).to(new1.weight)
        if fc1.bias is not None:
            new1.bias.copy_(fc1.bias[g])
        new2.weight.copy_(fc2.weight[:, g] / counts[g])
        if fc2.bias is not None:
            new2.bias.copy_(fc2.bias)
    return new1, new2


def apply_net2net(model: nn.Module, *, mlp_hidden: int | None, noise: float, seed: int) -> nn.Module:
    """Widen every block's MLP to ``mlp_hidden`` units (default: twice as wide), preserving the function."""
    require_vit(model, "net2net")
    g = seeded(seed)
    for block in model.blocks:
        width = mlp_hidden if mlp_hidden is not None else 2 * block.mlp.fc1.out_features
        block.mlp.fc1, block.mlp.fc2 = widen_linear_pair(block.mlp.fc1, block.mlp.fc2, width, g, noise)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


register_method("kd", apply_kd, family="remapping", description="distil a frozen teacher into a student",
                options=KDOptions, last=True)
register_method("weight-selection", apply_weight_selection, family="remapping",
                description="student initialised from consistent slices of the teacher",
                options=WeightSelectionOptions, initializer=True)
register_method("net2net", apply_net2net, family="remapping", description="function-preserving MLP widening",
                options=Net2NetOptions)
