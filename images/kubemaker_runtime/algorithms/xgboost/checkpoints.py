"""Checkpoints every N rounds in /opt/ml/checkpoints, and resuming from the newest.

Files are named like SageMaker's XGBoost names them, ``xgboost-checkpoint.<rounds>``
(the number of rounds the model holds), written atomically, the newest few kept. The
agent syncs the directory to the job's checkpoint URI and restores it before a
restarted job (a spot interruption, a retried pod) starts again.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import xgboost as xgb

logger = logging.getLogger(__name__)

PREFIX = "xgboost-checkpoint."
KEEP = 5
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")


def checkpoint_files(directory: Path) -> list[tuple[int, Path]]:
    """(rounds, path) of each checkpoint in the directory, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_latest(directory: Path) -> xgb.Booster | None:
    """The newest checkpoint that loads, or None. A torn file is skipped, not fatal."""
    for rounds, path in reversed(checkpoint_files(directory)):
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(path.read_bytes()))
        except xgb.core.XGBoostError as error:
            logger.warning("skipping unreadable checkpoint %s: %s", path, error)
            continue
        if booster.num_boosted_rounds() != rounds:
            logger.warning("skipping %s: it holds %d rounds", path, booster.num_boosted_rounds())
            continue
        logger.info("resuming from checkpoint %s (%d rounds done)", path, rounds)
        return booster
    return None


def save(directory: Path, booster: xgb.Booster, keep: int = KEEP) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rounds = booster.num_boosted_rounds()
    path = directory / f"{PREFIX}{rounds}"
    tmp = directory / f".{path.name}.tmp"
    tmp.write_bytes(bytes(booster.save_raw("ubj")))
    os.replace(tmp, path)
    for _, old in checkpoint_files(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


class CheckpointCallback(xgb.callback.TrainingCallback):
    """Save a checkpoint every ``every`` rounds (on the host that writes: rank 0)."""

    def __init__(self, directory: Path, every: int, enabled: bool = True) -> None:
        super().__init__()
        self.directory = directory
        self.every = every
        self.enabled = enabled

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: object) -> bool:
        # The model's own round count: a resumed run's epochs start again at 0.
        if self.enabled and model.num_boosted_rounds() % self.every == 0:
            save(self.directory, model)
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        if self.enabled and model.num_boosted_rounds() % self.every != 0:
            save(self.directory, model)
        return model
