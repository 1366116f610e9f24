"""MTT, matching training trajectories (Cazenavette et al., CVPR 2022): a student starts from an expert's
parameters at a random early epoch, takes `syn_steps` SGD steps on the synthetic images with a learned learning
rate, and should land where the expert was `expert_epochs` later. The loss is the normalized parameter distance
||student_N - expert_{t+M}||^2 / ||expert_t - expert_{t+M}||^2; images and learning rate are updated together.

The learned learning rate goes into the artifact ('lr') and MTT's evaluation protocol trains with it. With
mtt.zca the networks see ZCA-whitened images (fitted on the training split, stored in the artifact as 'zca_mean'
and 'zca_matrix'). As in MTT's code the images are learned unconstrained in the normalized (or whitened) space with
the paper's image rate: dreamdd stores them as pixels, never clamped, and takes the exactly equivalent step
(image_optimizer).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import DreamddError
from ..image_optimizer import Preconditioner, zca_preconditioner
from ..experts import ExpertBuffer, zca_for
from ..synthetic import decode
from ..training import make_augment
from ..zca import ZCA, Preprocessed
from .base import Method


class MTT(Method):
    name = "mtt"
    clamps = False               # MTT's distill.py never clamps its images
    reselects_every_iteration = False   # the experts carry the real data; the selector shapes only the init

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg, m = self.config, self.config.mtt
        if len(ctx.classes) < ctx.data.info.num_classes:
            raise DreamddError("method mtt matches whole-set trajectories and does not shard its classes over "
                               "processes: run it in one process (without torchrun)")
        if not m.experts:
            raise DreamddError("method mtt needs expert trajectories: train them with `dreamdd experts --dataset "
                               "NAME --out DIR` and pass --set mtt.experts=DIR")
        self.buffer = ExpertBuffer(m.experts)
        self.student = ctx.network("mtt-student")
        self.shapes = [(name, p.shape, p.numel()) for name, p in self.student.named_parameters()]
        self.buffer.check(cfg, sum(n for _, _, n in self.shapes))
        self.start_epochs = min(m.max_start_epoch, self.buffer.epochs - m.expert_epochs + 1)
        if self.start_epochs < 1:
            raise DreamddError(f"the experts hold {self.buffer.epochs} epochs, too few for mtt.expert_epochs="
                               f"{m.expert_epochs}; train longer experts or lower mtt.expert_epochs")
        if self.start_epochs < m.max_start_epoch:
            ctx.log(f"warning: the experts hold {self.buffer.epochs} epochs, so start epochs are drawn from "
                     f"[0, {self.start_epochs}) instead of [0, mtt.max_start_epoch={m.max_start_epoch}); train "
                     f"experts for at least {m.max_start_epoch + m.expert_epochs - 1} epochs to run the preset")
        self.zca = zca_for(cfg, ctx.data, ctx.device)
        self.augment = make_augment(m.augment, m.augment_mode)
        self.lr = torch.tensor(float(m.lr_init if m.lr_init is not None else m.lr_teacher),
                               device=ctx.device).requires_grad_(True)
        self.lr_optimizer = torch.optim.SGD([self.lr], lr=m.lr_lr, momentum=0.5)

    def steps_per_iteration(self) -> int:
        return self.config.mtt.syn_steps

    @property
    def image_space(self) -> str:
        return "zca" if self.zca is not None else "normalized"

    def image_preconditioner(self) -> Preconditioner | None:
        if self.zca is None:
            return super().image_preconditioner()
        return zca_preconditioner(self.ctx.data.info.std, self.zca.matrix)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape, n in self.shapes:
            out[name] = flat[offset:offset + n].view(shape)
            offset += n
        return out

    def _wrap(self, net: nn.Module) -> nn.Module:
        return Preprocessed(self.zca, net) if self.zca is not None else net

    def init_network(self) -> nn.Module:
        """The student at expert 0's initialisation (in the ZCA space when on): DREAM's initialisation clusters
        with the network MTT starts matching from."""
        net = self.ctx.network("init")
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(self.buffer.row(0, 0).to(self.ctx.device), net.parameters())
        return self._wrap(net)

    def outer_iteration(self, it: int, synthetic, image_optimizer) -> torch.Tensor:
        m, ctx = self.config.mtt, self.ctx
        g = ctx.rng(it)
        expert = int(torch.randint(len(self.buffer), (), generator=g))
        start = int(torch.randint(self.start_epochs, (), generator=g))
        device = ctx.device
        start_params = self.buffer.row(expert, start).to(device)
        target = self.buffer.row(expert, start + m.expert_epochs).to(device)
        with ctx.timed("match"):
            images = ctx.data.info.normalize(decode(synthetic.images, synthetic.factor))
            labels = synthetic.labels.repeat_interleave(synthetic.factor ** 2)
            batch = m.batch_syn or images.shape[0]
            params = start_params.clone().requires_grad_(True)
            chunks: list[torch.Tensor] = []
            self.student.train()
            for _ in range(m.syn_steps):
                if not chunks:
                    chunks = list(torch.split(torch.randperm(images.shape[0], generator=g), batch))
                idx = chunks.pop().to(device)
                x = images[idx]
                if self.augment is not None:
                    x = self.augment(x, g, shared=False)
                if self.zca is not None:
                    x = self.zca(x)
                logits = functional_call(self.student, self._unflatten(params), (x,))
                ce = F.cross_entropy(logits, labels[idx])
                grad = torch.autograd.grad(ce, params, create_graph=True)[0]
                params = params - self.lr * grad
                ctx.inner_step_done()
            loss = (params - target).pow(2).sum() / (start_params - target).pow(2).sum().clamp(min=1e-12)
        value = ctx.image_step(loss, image_optimizer, extra=self.lr_optimizer)
        with torch.no_grad():
            self.lr.clamp_(min=m.lr_min)    # a learning rate must stay positive
        return value

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr.detach().cpu().clone(), "lr_optimizer": self.lr_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "lr" in state:
            with torch.no_grad():
                self.lr.copy_(state["lr"].to(self.lr.device))
            self.lr_optimizer.load_state_dict(state["lr_optimizer"])

    def artifact_tensors(self) -> dict[str, torch.Tensor]:
        out = {"lr": self.lr.detach().cpu().reshape(1)}
        if self.zca is not None:
            out["zca_mean"], out["zca_matrix"] = self.zca.mean.cpu(), self.zca.matrix.cpu()
        return out

    def metadata(self) -> dict[str, Any]:
        m = self.config.mtt
        return {"lr": float(self.lr.detach()), "zca": self.zca is not None,
                "zca_eps": m.zca_eps if self.zca is not None else None,
                "experts": {"path": str(m.experts), "count": len(self.buffer), "epochs": self.buffer.epochs},
                "syn_steps": m.syn_steps, "expert_epochs": m.expert_epochs, "max_start_epoch": m.max_start_epoch}

    def eval_lr(self) -> float | None:
        return float(self.lr.detach())

    def eval_preprocess(self) -> nn.Module | None:
        return self.zca

    @classmethod
    def eval_settings_from(cls, extra: dict[str, torch.Tensor]) -> tuple[float | None, nn.Module | None]:
        """The learned rate ('lr') and the ZCA whitening ('zca_mean', 'zca_matrix') that artifact_tensors() wrote;
        None where absent."""
        lr = float(extra["lr"].reshape(-1)[0]) if "lr" in extra else None
        preprocess = None
        if "zca_matrix" in extra and "zca_mean" in extra:
            preprocess = ZCA(extra["zca_mean"].float(), extra["zca_matrix"].float())
        return lr, preprocess
