"""RewACT: LeRobot's ACT with a reward head on the decoder output.

The head reads the decoder's first output token (the query for the current step) through a
forward hook on ACT's action head, or with `reward_features="encoder_images"` the mean of the
encoder's image tokens through a hook on ACT's encoder; either way ACT runs unmodified and one
forward pass yields both the action chunk and the reward. The reward is distributional by default: logits over bins
in `reward_value_range`, trained with cross-entropy against an HL-Gauss (or two-hot) encoding
of the target and read out as the expectation over bin centres. Images go through ACT's ResNet
or, with `vision_encoder_type="dinov3"`, a pretrained DINOv3 (`rewact.vision_encoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lerobot.utils.constants import REWARD
from torch import Tensor, nn

from rewact.configuration_rewact import RewACTConfig
from rewact.modeling_act_base import ACTExtensionPolicy
from rewact.processor_rewact import REWARD_IMITATE, REWARD_LABELED, REWARD_WEIGHT


class RewardHead(nn.Module):
    """rewACT's MLP (dim -> dim/2 -> dim/4), ending in bin logits or one sigmoid unit."""

    def __init__(self, config: RewACTConfig):
        super().__init__()
        widths = [config.dim_model] + [max(1, int(config.dim_model * f)) for f in config.reward_hidden_fractions]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(config.dropout)]
        outputs = config.reward_bins if config.reward_head == "distributional" else 1
        layers.append(nn.Linear(widths[-1], outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features)


def bin_edges(config: RewACTConfig) -> Tensor:
    low, high = config.reward_value_range
    return torch.linspace(low, high, config.reward_bins + 1)


def hl_gauss_targets(values: Tensor, edges: Tensor, sigma: float) -> Tensor:
    """Probability mass of N(value, sigma) in each bin, renormalised to the value range."""
    cdf = 0.5 * (1 + torch.erf((edges[None, :] - values[:, None]) / (sigma * math.sqrt(2))))
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)


def two_hot_targets(values: Tensor, edges: Tensor) -> Tensor:
    """Split each value between its two nearest bin centres, linearly."""
    centres = (edges[1:] + edges[:-1]) / 2
    clamped = values.clamp(centres[0], centres[-1])
    upper = torch.searchsorted(centres, clamped, right=False).clamp(1, len(centres) - 1)
    lower = upper - 1
    weight_upper = (clamped - centres[lower]) / (centres[upper] - centres[lower])
    targets = torch.zeros(len(values), len(centres), device=values.device)
    targets.scatter_(1, lower[:, None], (1 - weight_upper)[:, None])
    targets.scatter_add_(1, upper[:, None], weight_upper[:, None])
    return targets


class RewACTPolicy(ACTExtensionPolicy):
    config_class = RewACTConfig
    name = "rewact"

    def __init__(self, config: RewACTConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.reward_head = RewardHead(config)
        edges = bin_edges(config)
        self.register_buffer("reward_bin_edges", edges, persistent=False)
        self.register_buffer("reward_bin_centres", (edges[1:] + edges[:-1]) / 2, persistent=False)
        self._features: Tensor | None = None
        if config.reward_features == "decoder":
            self.model.action_head.register_forward_hook(self._keep_decoder_output)
        else:
            self.model.encoder.register_forward_hook(self._keep_encoder_images)

    def _keep_decoder_output(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._features = inputs[0][:, 0]

    def _keep_encoder_images(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """Mean of the encoder's image tokens; (S, B, D) tokens are the latent, the state tokens, then images."""
        leading = 1 + bool(self.config.robot_state_feature) + bool(self.config.env_state_feature)
        self._features = output[leading:].mean(dim=0)

    def _reward_from_logits(self, logits: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.config.reward_head == "scalar":
            return torch.sigmoid(logits[:, 0]), None
        probs = logits.softmax(dim=-1)
        return probs @ self.reward_bin_centres, probs

    def _reward_logits(self) -> Tensor:
        return self.reward_head(self._features)

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        """ACT's loss with failure frames masked out of imitation, plus the reward loss.

        `reduction="none"` returns one loss per sample, as LeRobot's sample weighting (RA-BC)
        asks: that sample's imitation loss (L1 + KL) plus the batch's mean reward loss, so the
        weights reweight imitation only and the reward head learns from every labelled frame,
        failures included (which RA-BC would otherwise weight down to zero).
        """
        if REWARD not in batch or not torch.is_tensor(batch[REWARD]):
            raise ValueError(
                "RewACT needs a reward target per frame (`next.reward`); build the policy's processors "
                "with the dataset metadata (stock lerobot-train does) or use a dataset with `next.reward`"
            )
        imitate = batch.get(REWARD_IMITATE)
        if imitate is not None:
            batch = {**batch, "action_is_pad": batch["action_is_pad"] | ~imitate.to(batch["action_is_pad"].device)[:, None]}
        actions_hat, (mu_hat, log_sigma_x2_hat) = self.model(self._model_inputs(batch))
        imitation, loss_dict = self.imitation_loss(batch, actions_hat, mu_hat, log_sigma_x2_hat, reduction)

        target = batch[REWARD].reshape(-1).float()
        labeled = batch.get(REWARD_LABELED)
        labeled = torch.ones_like(target, dtype=torch.bool) if labeled is None else labeled.to(target.device)
        logits = self._reward_logits()
        if self.config.reward_head == "scalar":
            per_sample = F.mse_loss(torch.sigmoid(logits[:, 0]), target, reduction="none")
        else:
            if self.config.reward_target_encoding == "hl_gauss":
                width = (self.config.reward_value_range[1] - self.config.reward_value_range[0]) / self.config.reward_bins
                soft = hl_gauss_targets(target, self.reward_bin_edges, self.config.hl_gauss_sigma_bins * width)
            else:
                soft = two_hot_targets(target, self.reward_bin_edges)
            per_sample = -(soft * logits.log_softmax(dim=-1)).sum(dim=-1)
        weight = batch.get(REWARD_WEIGHT)
        weight = labeled.float() if weight is None else weight.to(target.device).float() * labeled
        reward_loss = (per_sample * weight).sum() / weight.sum().clamp_min(1e-6)
        predicted, _ = self._reward_from_logits(logits.detach())
        loss_dict["reward_loss"] = reward_loss.item()
        loss_dict["reward_mae"] = ((predicted - target).abs() * labeled).sum().item() / max(int(labeled.sum()), 1)
        return imitation + self.config.reward_loss_weight * reward_loss, loss_dict

    @torch.no_grad()
    def predict_reward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Reward in the value range (B,) and its distribution over bins (B, K), or None if scalar."""
        self.eval()
        self.model(self._model_inputs(batch))
        return self._reward_from_logits(self._reward_logits())

    @torch.no_grad()
    def select_action_with_reward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The action `select_action` would return, and the reward, from one forward pass."""
        self.eval()
        chunk = self.model(self._model_inputs(batch))[0]
        reward, _ = self._reward_from_logits(self._reward_logits())
        if self.config.temporal_ensemble_coeff is not None:
            return self.temporal_ensembler.update(chunk), reward
        if len(self._action_queue) == 0:
            self._action_queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._action_queue.popleft(), reward
