"""What RewACT and ACTvantage add to LeRobot's ACT alike, written once.

Both keep ACT's network unmodified and extend it around the edges: batches without a robot
state, ACT's imitation loss kept per sample (LeRobot's sample weighting, RA-BC, asks for
`forward(batch, reduction="none")`), and a clear error when a checkpoint meets a dataset of
another layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from lerobot.utils.feature_utils import dataset_to_policy_features
from torch import Tensor

from rewact.vision_encoder import attach_vision_encoder

REDUCTIONS = ("mean", "none")


class ACTExtensionPolicy(ACTPolicy):
    """LeRobot's ACTPolicy as the base of this package's policies (not a policy type itself),
    with the image encoder their config chooses (`VisionEncoderOptions`)."""

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        attach_vision_encoder(self.model, config)

    def _with_state_placeholder(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """LeRobot 0.6.1's ACT reads `batch[OBS_STATE].device` even when the dataset has no
        state; an empty (B, 0) tensor keeps state-free layouts working without patching ACT."""
        if self.config.robot_state_feature or OBS_STATE in batch:
            return batch
        reference = next(v for k, v in batch.items() if k.startswith("observation.") and torch.is_tensor(v))
        return {**batch, OBS_STATE: reference.new_empty(reference.shape[0], 0)}

    def _model_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        batch = self._with_state_placeholder(dict(batch))
        if self.config.image_features:
            batch[OBS_IMAGES] = [batch[key] for key in self.config.image_features]
        return batch

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        self.eval()
        return self.model(self._model_inputs(batch))[0]

    def imitation_loss(
        self, batch: dict[str, Tensor], actions_hat: Tensor, mu_hat: Tensor | None, log_sigma_x2_hat: Tensor | None,
        reduction: str = "mean",
    ) -> tuple[Tensor, dict]:
        """ACT's loss (L1 over the chunk's valid steps + kl_weight * the VAE's KL), as the batch
        mean or, with `reduction="none"`, one value per sample (each over its own valid steps)."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
        abs_err = F.l1_loss(batch[ACTION], actions_hat, reduction="none")
        valid = ~batch["action_is_pad"].unsqueeze(-1)
        per_sample_l1 = (abs_err * valid).sum(dim=(1, 2)) / (valid.sum(dim=(1, 2)) * abs_err.shape[-1]).clamp_min(1)
        l1_loss = (abs_err * valid).sum() / (valid.sum() * abs_err.shape[-1]).clamp_min(1)
        per_sample_kld = torch.zeros_like(per_sample_l1)
        if self.config.use_vae and log_sigma_x2_hat is not None:
            per_sample_kld = (-0.5 * (1 + log_sigma_x2_hat - mu_hat.pow(2) - log_sigma_x2_hat.exp())).sum(-1)
        loss_dict = {"l1_loss": l1_loss.item()}
        if self.config.use_vae:
            loss_dict["kld_loss"] = per_sample_kld.mean().item()
        if reduction == "none":
            return per_sample_l1 + self.config.kl_weight * per_sample_kld, loss_dict
        return l1_loss + self.config.kl_weight * per_sample_kld.mean(), loss_dict

    def check_features(self, dataset_features: dict[str, dict]) -> None:
        """Raise a clear error when a dataset's layout differs from the one this policy was trained on."""
        available = dataset_to_policy_features(dataset_features)  # LeRobot's own view: images channel-first
        problems = []
        for key, feature in {**self.config.input_features, **self.config.output_features}.items():
            if key not in available:
                problems.append(f"'{key}' missing")
            elif tuple(available[key].shape) != tuple(feature.shape):
                problems.append(f"'{key}' has shape {tuple(available[key].shape)}, "
                                f"the checkpoint expects {tuple(feature.shape)}")
        if problems:
            raise ValueError("checkpoint does not fit this dataset: " + "; ".join(problems))
