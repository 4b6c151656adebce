"""``basic_train``: fine-tune a copy of the candidate before it is measured (width search, QAT)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bitsmith.errors import CandidateError
from bitsmith.schema import Table
from bitsmith.search.runners.base import Context, Runner, register_runner


class TrainSettings(Table):
    max_epochs: int = Field(1, ge=1, le=100_000)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    scheduler: Literal["cosine", "none"] = "cosine"
    data_loader: str = "train_dataloader"
    num_samples: int | None = Field(None, ge=1)  # the first training rows; absent: all
    # MASE's basic_train keys for language models: accepted, unused (no warm-up or accumulation here).
    lr_scheduler: str | None = None
    num_warmup_steps: int | None = Field(None, ge=0)
    gradient_accumulation_steps: int | None = Field(None, ge=1)

    @field_validator("data_loader")
    @classmethod
    def _training_split(cls, split: str) -> str:
        if split != "train_dataloader":
            raise ValueError("\"train_dataloader\": fine-tuning uses the training split, never the data "
                             "candidates are scored on")
        return split


@register_runner
class BasicTrain(Runner):
    name = "basic_train"
    kind = "software"
    Settings = TrainSettings
    metrics = frozenset({"train_loss"})
    stage = 10
    implies = ("basic_evaluation",)

    def __call__(self, graph, ctx: Context):
        from dataclasses import replace

        from bitsmith.data import Split
        from bitsmith.errors import BitsmithError
        from bitsmith.train import fit

        s = self.settings
        n = s.num_samples
        data = ctx.data if n is None else replace(ctx.data, train=Split(ctx.data.train.x[:n], ctx.data.train.y[:n]))
        trained = graph.clone()  # never train modules shared with the base graph
        try:
            result = fit(trained.gm, data, seed=ctx.seed, device=ctx.device, max_epochs=s.max_epochs,
                         max_steps=s.max_steps, batch_size=s.batch_size, learning_rate=s.learning_rate,
                         optimizer=s.optimizer, weight_decay=s.weight_decay, scheduler=s.scheduler)
        except BitsmithError as e:  # fine-tuning this candidate diverged: prune it, not the search
            raise CandidateError(f"basic_train: {e}") from None
        trained.gm.eval()
        return trained, {"train_loss": result.history[-1]["loss"]}
