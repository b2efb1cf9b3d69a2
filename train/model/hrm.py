"""HRM-ACT: two recurrent transformer levels (slow H, fast L) wrapped in adaptive computation time.

One ACT step runs H_cycles x L_cycles updates: L gets z_H + the input embedding, H gets
z_L after each block of L updates. Only the last L and the last H update carry a
gradient (the one-step approximation of the fixed-point gradient); the others run under
no_grad, so memory does not grow with the number of cycles. A Q head on z_H decides
whether to halt; halted sequences are swapped for fresh data in the carry, so a batch
always stays full and every shape is static.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.model.config import HRMConfig
from train.model.feudal import SubgoalHead
from train.model.gating import CrossLevelGate, gate_metrics
from train.model.layers import (CastedEmbedding, CastedLinear, CosSin, ReasoningModule, RotaryEmbedding,
                                trunc_normal_init_)
from train.model.sparse_embedding import CastedSparseEmbedding

Batch = dict[str, torch.Tensor]


@dataclass
class InnerCarry:
    z_H: torch.Tensor  # (B, puzzle_emb_len + seq_len, hidden)
    z_L: torch.Tensor
    # z_H when the manager last emitted a goal; only with feudal subgoals.
    goal_src: torch.Tensor | None = None


@dataclass
class ACTCarry:
    inner: InnerCarry
    steps: torch.Tensor   # (B,) int32: ACT steps taken on the current puzzle
    halted: torch.Tensor  # (B,) bool: replace this row with new data on the next call
    current_data: Batch   # the puzzles being worked on (rows swapped in as others halt)


class HRMInner(nn.Module):
    """The recurrent core: one call = one ACT step of H_cycles x L_cycles updates."""

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.config = c = config
        self.forward_dtype = getattr(torch, c.forward_dtype)

        self.embed_scale = math.sqrt(c.hidden_size)
        embed_std = 1.0 / self.embed_scale
        self.embed_tokens = CastedEmbedding(c.vocab_size, c.hidden_size, embed_std, self.forward_dtype)
        self.lm_head = CastedLinear(c.hidden_size, c.vocab_size, bias=False)
        self.q_head = CastedLinear(c.hidden_size, 2, bias=True)

        # Puzzle embeddings occupy ceil(ndim / hidden) extra positions in front of the tokens.
        self.puzzle_emb_len = -(c.puzzle_emb_ndim // -c.hidden_size)
        if c.puzzle_emb_ndim > 0:
            self.puzzle_emb = CastedSparseEmbedding(c.num_puzzle_identifiers, c.puzzle_emb_ndim,
                                                    batch_size=c.batch_size, init_std=0.0,
                                                    cast_to=self.forward_dtype)
        self.total_len = c.seq_len + self.puzzle_emb_len
        if c.pos_encodings == "rope":
            self.rotary = RotaryEmbedding(c.hidden_size // c.num_heads, self.total_len, c.rope_theta)
        else:
            self.embed_pos = CastedEmbedding(self.total_len, c.hidden_size, embed_std, self.forward_dtype)

        level = (c.hidden_size, c.num_heads, c.expansion, c.rms_norm_eps, c.mlp_multiple_of)
        self.H_level = ReasoningModule(c.H_layers, *level)
        self.L_level = ReasoningModule(c.L_layers, *level)

        # Fixed random start states: every new puzzle starts from the same z_H, z_L.
        self.H_init = nn.Buffer(trunc_normal_init_(torch.empty(c.hidden_size), std=1.0).to(self.forward_dtype))
        self.L_init = nn.Buffer(trunc_normal_init_(torch.empty(c.hidden_size), std=1.0).to(self.forward_dtype))

        # Q logits start near sigmoid(-5): "don't halt yet, nothing is known", which keeps
        # the bootstrapped targets small while the LM head learns.
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)  # type: ignore[union-attr]

        # Optional parts are built last, so the baseline's parameters draw the same random
        # numbers whether or not they exist.
        self.gate_HL = self.gate_LH = None
        if c.use_gating:
            self.gate_HL = CrossLevelGate(c.hidden_size, c.gate_hidden_ratio, c.gate_init_bias)
            self.gate_LH = CrossLevelGate(c.hidden_size, c.gate_hidden_ratio, c.gate_init_bias)
        self.subgoal = None
        if c.feudal:
            self.subgoal = SubgoalHead(c.hidden_size, c.goal_dim, gating=c.subgoal_head.gating,
                                       gate_hidden_ratio=c.gate_hidden_ratio, gate_init_bias=c.gate_init_bias)

    # --- carry

    def empty_carry(self, batch_size: int, device: torch.device) -> InnerCarry:
        shape = (batch_size, self.total_len, self.config.hidden_size)
        zeros = lambda: torch.zeros(shape, dtype=self.forward_dtype, device=device)  # noqa: E731
        return InnerCarry(zeros(), zeros(), zeros() if self.subgoal is not None else None)

    def reset_carry(self, reset: torch.Tensor, carry: InnerCarry) -> InnerCarry:
        flag = reset.view(-1, 1, 1)
        goal_src = None if carry.goal_src is None else torch.where(flag, self.H_init, carry.goal_src)
        return InnerCarry(torch.where(flag, self.H_init, carry.z_H), torch.where(flag, self.L_init, carry.z_L),
                          goal_src)

    # --- pieces of one step

    def _input_embeddings(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        emb = self.embed_tokens(inputs.to(torch.int32))
        if self.config.puzzle_emb_ndim > 0:
            puzzle = self.puzzle_emb(puzzle_ids)
            pad = self.puzzle_emb_len * self.config.hidden_size - puzzle.shape[-1]
            if pad > 0:
                puzzle = F.pad(puzzle, (0, pad))
            emb = torch.cat((puzzle.view(-1, self.puzzle_emb_len, self.config.hidden_size), emb), dim=-2)
        if self.config.pos_encodings == "learned":
            # 1/sqrt(2) keeps the variance of the sum of two unit-variance embeddings.
            emb = 0.707106781 * (emb + self.embed_pos.embedding_weight.to(self.forward_dtype))
        return self.embed_scale * emb

    def _goal_refresh(self, steps: torch.Tensor) -> torch.Tensor:
        """(H_cycles*L_cycles, B) bool: does the manager emit a goal before L update k of this step?

        L updates are counted across ACT steps (steps * updates_per_step + k), so a period
        longer than one step holds the goal over step boundaries; a new puzzle starts at 0.
        """
        per_step = self.config.H_cycles * self.config.L_cycles
        k = torch.arange(per_step, device=steps.device, dtype=torch.int64)
        count = steps.to(torch.int64).unsqueeze(0) * per_step + k.unsqueeze(1)
        return (count % self.config.subgoal_head.manager_period) == 0

    def _update_L(self, z_L: torch.Tensor, z_H: torch.Tensor, x: torch.Tensor, goal: torch.Tensor | None,
                  cos_sin: CosSin | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (new z_L, H's share of the injection, the whole input, the H->L gate)."""
        gate = None
        from_H = z_H
        if self.gate_HL is not None:
            gate = self.gate_HL(z_L, z_H)
            from_H = gate * z_H
        injection = from_H + x
        if goal is not None and self.subgoal is not None and self.subgoal.goal_gate is not None:
            injection = injection + self.subgoal.modulation(z_L, goal)
        return self.L_level(z_L, injection, cos_sin), from_H, z_L + injection, gate

    def _update_H(self, z_H: torch.Tensor, z_L: torch.Tensor, cos_sin: CosSin | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        gate = None
        from_L = z_L
        if self.gate_LH is not None:
            gate = self.gate_LH(z_H, z_L)
            from_L = gate * z_L
        return self.H_level(z_H, from_L, cos_sin), from_L, z_H + from_L, gate

    # --- one ACT step

    def forward(self, carry: InnerCarry, batch: Batch, steps: torch.Tensor
                ) -> tuple[InnerCarry, torch.Tensor, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns (new carry, logits (B, seq, vocab), (q_halt, q_continue) logits, per-sequence extras).

        `steps` (B,) is the number of ACT steps already taken on each row (0 for new puzzles).
        """
        cfg = self.config
        cos_sin = self.rotary() if cfg.pos_encodings == "rope" else None
        x = self._input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        feudal = self.subgoal is not None
        refresh = self._goal_refresh(steps) if feudal else None
        last = cfg.H_cycles * cfg.L_cycles - 1

        z_H, z_L, goal_src = carry.z_H, carry.z_L, carry.goal_src
        with torch.no_grad():
            for k in range(last):
                if feudal:
                    goal_src = torch.where(refresh[k].view(-1, 1, 1), z_H, goal_src)
                # The goal only matters here when it feeds L's input.
                goal = self.subgoal.goal(goal_src) if feudal and self.subgoal.goal_gate is not None else None
                z_L = self._update_L(z_L, z_H, x, goal, cos_sin)[0]
                if k % cfg.L_cycles == cfg.L_cycles - 1:  # end of an L block, not the last one
                    z_H = self._update_H(z_H, z_L, cos_sin)[0]

        # The one update of each level that backpropagates.
        goal = None
        if feudal:
            goal_src = torch.where(refresh[last].view(-1, 1, 1), z_H, goal_src)
            goal = self.subgoal.goal(goal_src)
        z_L_before = z_L
        z_L, from_H, l_input, gate_hl = self._update_L(z_L, z_H, x, goal, cos_sin)
        z_H, from_L, h_input, gate_lh = self._update_H(z_H, z_L, cos_sin)

        extras: dict[str, torch.Tensor] = {}
        if gate_hl is not None and gate_lh is not None:
            extras.update(gate_metrics(gate_hl, from_H, l_input, gate_lh, from_L, h_input))
        if feudal:
            extras["feudal_cos"] = self.subgoal.alignment(z_L_before, z_L, goal)

        logits = self.lm_head(z_H)[:, self.puzzle_emb_len:]
        q = self.q_head(z_H[:, 0]).to(torch.float32)
        new_carry = InnerCarry(z_H.detach(), z_L.detach(), goal_src)
        return new_carry, logits, (q[..., 0], q[..., 1]), extras


class HRMACT(nn.Module):
    """ACT wrapper: swaps halted rows for new data, counts steps, decides halting by Q-learning."""

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.config = config
        self.inner = HRMInner(config)

    @property
    def puzzle_emb(self) -> CastedSparseEmbedding:
        return self.inner.puzzle_emb

    def initial_carry(self, batch: Batch) -> ACTCarry:
        """A carry where every row is halted, so the first forward loads the whole batch."""
        inputs = batch["inputs"]
        size, device = inputs.shape[0], inputs.device
        return ACTCarry(
            inner=self.inner.empty_carry(size, device),
            steps=torch.zeros(size, dtype=torch.int32, device=device),
            halted=torch.ones(size, dtype=torch.bool, device=device),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: ACTCarry, batch: Batch) -> tuple[ACTCarry, dict[str, torch.Tensor]]:
        cfg = self.config
        inner = self.inner.reset_carry(carry.halted, carry.inner)
        steps = torch.where(carry.halted, 0, carry.steps)
        data = {k: torch.where(carry.halted.view((-1,) + (1,) * (v.ndim - 1)), batch[k], v)
                for k, v in carry.current_data.items()}

        inner, logits, (q_halt, q_continue), extras = self.inner(inner, data, steps)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue, **extras}

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= cfg.halt_max_steps
            halted = is_last
            # Eval always runs halt_max_steps, so every row of a batch halts together.
            if self.training and cfg.halt_max_steps > 1:
                halted = halted | (q_halt > q_continue)
                # Exploration: some rows get a random minimum number of steps before halting.
                explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                # Bootstrapped target for Q(continue): the next step's best Q, from the same
                # network (no replay buffer or target net: the many rows of a batch act as
                # parallel environments, as in PQN).
                next_halt, next_continue = self.inner(inner, data, steps)[2]
                outputs["target_q_continue"] = torch.sigmoid(
                    torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))

        return ACTCarry(inner, steps, halted, data), outputs
