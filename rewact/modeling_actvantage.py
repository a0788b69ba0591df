"""ACTvantage: LeRobot's ACT conditioned on an advantage, in the style of pi*0.6.

One extra transformer-encoder token, a linear embedding of the scalar condition with its own
learned position, sits right after ACT's latent token; forward pre-hooks on ACT's encoder and
decoder insert it (and its position, which the decoder's cross-attention reads too), so ACT
itself runs unmodified. The condition is +1 / -1 per training frame (its binarised advantage),
dropped to 0 with probability `advantage_dropout_prob` while training only; at inference it is
`inference_advantage`, with optional classifier-free guidance against the unconditioned pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rewact.configuration_actvantage import ACTvantageConfig
from rewact.modeling_act_base import ACTExtensionPolicy
from rewact.processor_actvantage import ADVANTAGE


class ACTvantagePolicy(ACTExtensionPolicy):
    config_class = ACTvantageConfig
    name = "actvantage"

    def __init__(self, config: ACTvantageConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.advantage_input_proj = nn.Linear(1, config.dim_model)
        self.advantage_pos_embed = nn.Embedding(1, config.dim_model)
        self._condition: Tensor | None = None
        self.model.encoder.register_forward_pre_hook(self._insert_advantage_token, with_kwargs=True)
        self.model.decoder.register_forward_pre_hook(self._insert_advantage_position, with_kwargs=True)

    def _with_advantage_position(self, pos_embed: Tensor) -> Tensor:
        """(S, 1, D) positions of [latent, ...] -> (S + 1, 1, D) of [latent, advantage, ...]."""
        advantage = self.advantage_pos_embed.weight[:, None].to(pos_embed.dtype)
        return torch.cat([pos_embed[:1], advantage, pos_embed[1:]])

    def _insert_advantage_token(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
        if self._condition is None:
            raise RuntimeError("ACTvantage's model runs through the policy (forward, predict_action_chunk), "
                               "which sets the advantage condition")
        (tokens,) = args
        token = self.advantage_input_proj(self._condition[:, None].to(tokens))
        tokens = torch.cat([tokens[:1], token[None], tokens[1:]])
        return (tokens,), {**kwargs, "pos_embed": self._with_advantage_position(kwargs["pos_embed"])}

    def _insert_advantage_position(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
        return args, {**kwargs, "encoder_pos_embed": self._with_advantage_position(kwargs["encoder_pos_embed"])}

    def _run(self, inputs: dict[str, Tensor], condition: Tensor) -> tuple[Tensor, tuple]:
        """ACT's forward pass with the advantage token set to `condition` (B,)."""
        self._condition = condition
        try:
            return self.model(inputs)
        finally:
            self._condition = None

    def _training_condition(self, batch: dict[str, Tensor]) -> Tensor:
        if ADVANTAGE not in batch or not torch.is_tensor(batch[ADVANTAGE]):
            raise ValueError(
                "ACTvantage needs an advantage condition per frame; build the policy's processors with the "
                "dataset metadata (stock lerobot-train does) from advantages written by `python -m training.advantage`"
            )
        condition = batch[ADVANTAGE].reshape(-1).float()
        if not self.training:
            return condition
        dropped = torch.rand_like(condition) < self.config.advantage_dropout_prob
        return condition.masked_fill(dropped, 0.0)

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        """ACT's loss on every frame, each conditioned on its advantage (`reduction` as RewACT's)."""
        condition = self._training_condition(batch)
        actions_hat, (mu_hat, log_sigma_x2_hat) = self._run(self._model_inputs(batch), condition)
        loss, loss_dict = self.imitation_loss(batch, actions_hat, mu_hat, log_sigma_x2_hat, reduction)
        loss_dict["unconditioned_fraction"] = (condition == 0).float().mean().item()
        return loss, loss_dict

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """The chunk for condition `batch["advantage"]` (default `inference_advantage`), guided
        by `cfg_gamma` against the unconditioned chunk when it is not 1."""
        self.eval()
        inputs = self._model_inputs(batch)
        observation = inputs[next(iter(self.config.input_features))]
        condition = batch.get(ADVANTAGE)
        if condition is None:
            condition = torch.full((observation.shape[0],), self.config.inference_advantage)
        condition = condition.reshape(-1).float().to(observation.device)
        conditioned = self._run(inputs, condition)[0]
        if self.config.cfg_gamma == 1.0:
            return conditioned
        unconditioned = self._run(inputs, torch.zeros_like(condition))[0]
        return unconditioned + self.config.cfg_gamma * (conditioned - unconditioned)
