"""Mutation check: plant one-line bugs in the scripts, one at a time, and run the tests that should catch them.

Each mutant below replaces one exact piece of a script's text (it must occur exactly once) with a wrong one: a
bug a careful reviewer could plant in a target, a loss, the loop's bookkeeping, the storage, a wrapper, a
schedule, distributed averaging or checkpoint and resume. The runner copies the four scripts and tests/ to a
fresh folder per mutant, applies the change, and runs the mutant's tests with `pytest -x`. A mutant is killed
when a test fails; the first failing test is recorded. Before any mutant, the same tests must pass on the
unchanged copy, or the check means nothing.

    python benchmarks/mutants.py                  # all mutants, 2 at a time; writes benchmarks/runs/mutants/
    python benchmarks/mutants.py --only a2c-     # the mutants whose id starts with a2c-
    python benchmarks/mutants.py --record         # writes benchmarks/results/mutants/ (the recorded result)
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import RECORD_HELP, ROOT, commit, machine, output_folder, say_wrote  # benchmarks/run.py

SCRIPTS = ["reinforce.py", "actor_critic_gae.py", "dqn_atari.py", "dqn_per_her.py"]

REINFORCE, A2C, DQN = "tests/test_reinforce.py::", "tests/test_actor_critic_gae.py::", "tests/test_dqn_atari.py::"
PER_HER, SHARED = "tests/test_dqn_per_her.py::", "tests/test_shared.py::"

# (id, script, text as it stands, text with the bug, tests that must catch it)
MUTANTS = [
    # reinforce.py
    (
        "rf-returns-discount",
        "reinforce.py",
        "future = rewards[t] + gamma * torch.where(ends[t], next_values[t], future)",
        "future = rewards[t] + torch.where(ends[t], next_values[t], future)",
        [REINFORCE + "test_discounted_returns_match_brute_force"],
    ),
    (
        "rf-returns-cross-episodes",
        "reinforce.py",
        "future = rewards[t] + gamma * torch.where(ends[t], next_values[t], future)",
        "future = rewards[t] + gamma * torch.where(ends[t], next_values[t] + future, future)",
        [REINFORCE + "test_discounted_returns_match_brute_force"],
    ),
    (
        "rf-bootstrap-next-episode",
        "reinforce.py",
        'final_obs = np.stack(infos["final_obs"][bootstrap])',
        "final_obs = next_obs_np[bootstrap]",
        [REINFORCE + "test_loop_bootstraps_a_time_limit_from_the_true_final_observation_and_a_termination_never"],
    ),
    (
        "rf-truncation-beats-termination",
        "reinforce.py",
        "bootstrap = truncations & ~terminations",
        "bootstrap = truncations",
        [REINFORCE + "test_loop_bootstraps_a_time_limit_from_the_true_final_observation_and_a_termination_never"],
    ),
    (
        "rf-no-rollout-end-bootstrap",
        "reinforce.py",
        "rollout.next_values[-1] = torch.where(ends[-1], rollout.next_values[-1], value(next_obs).squeeze(-1))",
        "rollout.next_values[-1] = torch.where(ends[-1], rollout.next_values[-1], 0.0)",
        [REINFORCE + "test_loop_bootstraps_a_time_limit_from_the_true_final_observation_and_a_termination_never"],
    ),
    (
        "rf-no-baseline",
        "reinforce.py",
        "advantages = returns - values",
        "advantages = returns",
        [REINFORCE + "test_one_update_hands_adam_the_gradients_of_the_estimator"],
    ),
    (
        "rf-policy-loss-sign",
        "reinforce.py",
        "policy_loss = -(logp * b_advantages).mean()",
        "policy_loss = (logp * b_advantages).mean()",
        [REINFORCE + "test_one_update_hands_adam_the_gradients_of_the_estimator"],
    ),
    (
        "rf-value-fits-advantages",
        "reinforce.py",
        "value_loss = (value(b_obs).squeeze(-1) - b_returns).pow(2).mean()",
        "value_loss = (value(b_obs).squeeze(-1) - b_advantages).pow(2).mean()",
        [REINFORCE + "test_one_update_hands_adam_the_gradients_of_the_estimator"],
    ),
    (
        "rf-episode-start-off-by-one",
        "reinforce.py",
        "out[t] = torch.where(ends[t - 1], x[t], out[t - 1])",
        "out[t] = torch.where(ends[t], x[t], out[t - 1])",
        [REINFORCE + "test_from_episode_start_matches_brute_force"],
    ),
    (
        "rf-entropy-sign",
        "reinforce.py",
        "(policy_loss - args.ent_coef * entropy.mean()).backward()",
        "(policy_loss + args.ent_coef * entropy.mean()).backward()",
        [REINFORCE + "test_one_update_hands_adam_the_gradients_of_the_estimator"],
    ),
    (
        "rf-episode-return-not-reset",
        "reinforce.py",
        "ep_return[dones], ep_length[dones] = 0.0, 0",
        "ep_length[dones] = 0",
        [REINFORCE + "test_loop_bootstraps_a_time_limit_from_the_true_final_observation_and_a_termination_never"],
    ),
    # actor_critic_gae.py
    (
        "a2c-gae-lambda",
        "actor_critic_gae.py",
        "carry = (~dones).to(rewards.dtype) * gamma * lam",
        "carry = (~dones).to(rewards.dtype) * lam",
        [A2C + "test_gae_matches_brute_force"],
    ),
    (
        "a2c-gae-crosses-episodes",
        "actor_critic_gae.py",
        "carry = (~dones).to(rewards.dtype) * gamma * lam",
        "carry = torch.ones_like(rewards) * gamma * lam",
        [A2C + "test_gae_matches_brute_force"],
    ),
    (
        "a2c-termination-bootstraps",
        "actor_critic_gae.py",
        "return torch.where(terminations, 0.0, torch.where(truncations, final_values, following))",
        "return torch.where(truncations, final_values, following)",
        [A2C + "test_truncation_bootstraps_from_final_value_and_termination_does_not"],
    ),
    (
        "a2c-bootstrap-next-episode",
        "actor_critic_gae.py",
        'final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncations]), device=device)',
        "final_obs = next_obs[torch.as_tensor(truncations, device=device)]",
        [A2C + "test_loop_bootstraps_truncations_from_the_true_final_observation"],
    ),
    (
        "a2c-value-target",
        "actor_critic_gae.py",
        "b_returns, b_values = (advantages + rollout.values).flatten(), rollout.values.flatten()",
        "b_returns, b_values = advantages.flatten(), rollout.values.flatten()",
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    (
        "a2c-sum-gradients",
        "actor_critic_gae.py",
        "g.copy_(flat[offset : offset + g.numel()].view_as(g) / world)",
        "g.copy_(flat[offset : offset + g.numel()].view_as(g))",
        [A2C + "test_two_processes_update_as_one_process_on_the_combined_batch"],
    ),
    (
        "a2c-rank0-gradients",
        "actor_critic_gae.py",
        "dist.all_reduce(flat)",
        "dist.broadcast(flat, 0)",
        [A2C + "test_two_processes_update_as_one_process_on_the_combined_batch"],
    ),
    (
        "a2c-norm-adv-per-process",
        "actor_critic_gae.py",
        "b_advantages = normalize(b_advantages, distributed)",
        "b_advantages = normalize(b_advantages, False)",
        [A2C + "test_two_processes_update_as_one_process_on_the_combined_batch"],
    ),
    (
        "a2c-life-loss-not-terminal",
        "actor_critic_gae.py",
        'terminations = terminations | ((infos["lives"] < lives) & ~dones)',
        "terminations = terminations",
        [A2C + "test_atari_life_loss_is_terminal_for_learning_but_the_game_goes_on"],
    ),
    (
        "a2c-anneal-restretched",
        "actor_critic_gae.py",
        "lr_now = (global_step, annealed_lr(lr_from, global_step, end))",
        "lr_now = lr_from",
        [A2C + "test_the_annealed_learning_rate_adam_applies_over_a_run_and_after_a_resume"],
    ),
    (
        "a2c-anneal-a-step-ahead",
        "actor_critic_gae.py",
        'optimizer.param_groups[0]["lr"] = annealed_lr(lr_from, global_step, end)',
        'optimizer.param_groups[0]["lr"] = annealed_lr(lr_from, global_step + args.batch_size, end)',
        [A2C + "test_the_annealed_learning_rate_adam_applies_over_a_run_and_after_a_resume"],
    ),
    (
        "a2c-gradient-not-clipped",
        "actor_critic_gae.py",
        "grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)",
        'grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), float("inf"))',
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    (
        "a2c-resume-end-not-whole-updates",
        "actor_critic_gae.py",
        "end = global_step + max(args.total_timesteps - global_step, 0) // args.batch_size * args.batch_size",
        "end = args.total_timesteps",
        [A2C + "test_a_run_resumed_under_another_number_of_processes_counts_its_steps"],
    ),
    (
        "a2c-norm-adv-over-one-advantage",
        "actor_critic_gae.py",
        "if args.norm_adv and args.batch_size == 1:",
        "if False:",
        [A2C + "test_norm_adv_refuses_a_batch_of_one"],
    ),
    (
        "a2c-eval-no-fire",
        "actor_critic_gae.py",
        "action[:] = fire",
        "pass",
        [A2C + "test_greedy_evaluation_presses_fire_after_a_lost_life"],
    ),
    (
        "a2c-policy-loss-sign",
        "actor_critic_gae.py",
        "policy_loss = -(logp * b_advantages).mean()",
        "policy_loss = (logp * b_advantages).mean()",
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    (
        "a2c-entropy-sign",
        "actor_critic_gae.py",
        "return policy_loss + vf_coef * value_loss - ent_coef * entropy.mean(), policy_loss",
        "return policy_loss + vf_coef * value_loss + ent_coef * entropy.mean(), policy_loss",
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    (
        "a2c-gamma-lambda-swapped",
        "actor_critic_gae.py",
        "advantages = gae(rollout.rewards, rollout.values, next_values, dones, args.gamma, args.gae_lambda)",
        "advantages = gae(rollout.rewards, rollout.values, next_values, dones, args.gae_lambda, args.gamma)",
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    (
        "a2c-normalize-no-std",
        "actor_critic_gae.py",
        "return (x - x.mean()) / (x.std() + 1e-8)",
        "return x - x.mean()",
        [A2C + "test_one_update_hands_adam_the_gradients_of_the_a2c_loss"],
    ),
    # --recurrent: the memory, its resets, the replay, and what a checkpoint keeps of the episodes
    (
        "a2c-memory-never-reset",
        "actor_critic_gae.py",
        "h, c = h * keep_t, c * keep_t",
        "h, c = h, c",
        [A2C + "test_the_memory_is_zeroed_where_an_episode_starts_and_no_gradient_crosses_it"],
    ),
    (
        "a2c-memory-cell-kept",
        "actor_critic_gae.py",
        "h, c = h * keep_t, c * keep_t",
        "h, c = h * keep_t, c",
        [A2C + "test_the_memory_is_zeroed_where_an_episode_starts_and_no_gradient_crosses_it"],
    ),
    (
        "a2c-replay-env-major",
        "actor_critic_gae.py",
        "gates = projected[:, t * num_envs : (t + 1) * num_envs] + torch.bmm(h, self.weight_hh)",
        "gates = projected[:, t :: projected.shape[1] // num_envs] + torch.bmm(h, self.weight_hh)",
        [A2C + "test_the_memory_is_zeroed_where_an_episode_starts_and_no_gradient_crosses_it"],
    ),
    (
        "a2c-lstm-gates-swapped",
        "actor_critic_gae.py",
        "c = f.sigmoid() * c + i.sigmoid() * g.tanh()",
        "c = i.sigmoid() * c + f.sigmoid() * g.tanh()",
        [A2C + "test_the_memory_is_zeroed_where_an_episode_starts_and_no_gradient_crosses_it"],
    ),
    (
        "a2c-replay-from-zero-memory",
        "actor_critic_gae.py",
        "rollout_state = lstm_state  # the memory before the rollout",
        "rollout_state = agent.initial_state(num_envs, device)  # the memory before the rollout",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-replay-without-starts",
        "actor_critic_gae.py",
        "replay = (rollout_state, rollout.starts.flatten())",
        "replay = (rollout_state, None)",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-starts-only-at-terminations",
        "actor_critic_gae.py",
        "next_starts = torch.as_tensor(dones, device=device)",
        "next_starts = torch.as_tensor(terminations, device=device)",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-final-value-forgets-the-episode",
        "actor_critic_gae.py",
        "memory = lstm_state and tuple(s[:, truncated] for s in lstm_state)",
        "memory = lstm_state and tuple(torch.zeros_like(s[:, truncated]) for s in lstm_state)",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-final-value-all-memories",
        "actor_critic_gae.py",
        "memory = lstm_state and tuple(s[:, truncated] for s in lstm_state)",
        "memory = lstm_state",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-starts-only-at-truncations",
        "actor_critic_gae.py",
        "next_starts = torch.as_tensor(dones, device=device)",
        "next_starts = torch.as_tensor(truncations, device=device)",
        [A2C + "test_the_update_replays_the_rollout_as_it_was_acted"],
    ),
    (
        "a2c-resume-needs-every-key",
        "actor_critic_gae.py",
        "return {key: checkpoint.get(key, fresh) for key, fresh in state.items()} if checkpoint else state",
        "return {key: checkpoint[key] for key in state} if checkpoint else state",
        [A2C + "test_a_checkpoint_of_an_older_version_resumes_with_the_new_flags_at_their_defaults"],
    ),
    (
        "a2c-resume-new-flag-from-the-command-line",
        "actor_critic_gae.py",
        'kept = {f.name: saved["args"].get(f.name, f.default) for f in dataclasses.fields(args) if f.init}',
        'kept = {f.name: saved["args"].get(f.name, getattr(args, f.name)) for f in dataclasses.fields(args) if f.init}',
        [A2C + "test_a_checkpoint_of_an_older_version_resumes_with_the_new_flags_at_their_defaults"],
    ),
    (
        "a2c-eval-memory-dropped",
        "actor_critic_gae.py",
        "out, _, lstm_state = agent(torch.as_tensor(obs, device=device), lstm_state, starts)",
        "out, _, _ = agent(torch.as_tensor(obs, device=device), lstm_state, starts)",
        [A2C + "test_evaluation_carries_its_own_memory_and_zeroes_it_at_each_episode"],
    ),
    (
        "a2c-eval-memory-never-reset",
        "actor_critic_gae.py",
        "starts = torch.as_tensor(terminated | truncated, device=device)",
        "starts = torch.zeros(1, dtype=torch.bool, device=device)",
        [A2C + "test_evaluation_carries_its_own_memory_and_zeroes_it_at_each_episode"],
    ),
    (
        "a2c-resume-restarts-random-streams",
        "actor_critic_gae.py",
        "state = restore(checkpoint, modules, state, rng=world == 1)",
        "state = restore(checkpoint, modules, state, rng=False)",
        [A2C + "test_a_resumed_run_continues_its_networks_optimizer_step_and_random_streams"],
    ),
    (
        "a2c-resume-forgets-the-optimizer",
        "actor_critic_gae.py",
        'modules = {"agent": agent, "optimizer": optimizer}',
        'modules = {"agent": agent}',
        [A2C + "test_a_resumed_run_continues_its_networks_optimizer_step_and_random_streams"],
    ),
    (
        "a2c-frame-stack-repeats-the-first",
        "actor_critic_gae.py",
        'padding_type="zero"',
        'padding_type="reset"',
        [A2C + "test_frame_stack_concatenates_the_last_observations_of_the_episode_only"],
    ),
    # --autoencoder: the decoder, L_AE, its place in the loss, pretraining, freezing, logging and refusals
    (
        "a2c-ae-decoder-one-frame",
        "actor_critic_gae.py",
        "(32, obs_shape[0], 8, 4)]:  # 9, 20, 84",
        "(32, 1, 8, 4)]:  # 9, 20, 84",
        [A2C + "test_the_decoder_mirrors_the_trunk_back_to_the_frames"],
    ),
    (
        "a2c-ae-target-unscaled",
        "actor_critic_gae.py",
        "return (x_hat - x).pow(2).mean(), x_hat",
        "return (x_hat - b_obs.float()).pow(2).mean(), x_hat",
        [A2C + "test_the_reconstruction_loss_is_the_mean_squared_difference_from_the_frames_in_0_1"],
    ),
    (
        "a2c-ae-loss-summed",
        "actor_critic_gae.py",
        "return (x_hat - x).pow(2).mean(), x_hat",
        "return (x_hat - x).pow(2).sum(), x_hat",
        [A2C + "test_the_reconstruction_loss_is_the_mean_squared_difference_from_the_frames_in_0_1"],
    ),
    (
        "a2c-ae-coef-ignored",
        "actor_critic_gae.py",
        "loss = loss + args.ae_coef * reconstruction",
        "loss = loss + reconstruction",
        [A2C + "test_online_the_trunk_gets_a2cs_gradient_plus_ae_coef_times_the_autoencoders"],
    ),
    (
        "a2c-ae-out-of-the-backward",
        "actor_critic_gae.py",
        "loss = loss + args.ae_coef * reconstruction",
        "loss = loss + args.ae_coef * reconstruction.detach()",
        [A2C + "test_online_the_trunk_gets_a2cs_gradient_plus_ae_coef_times_the_autoencoders"],
    ),
    (
        "a2c-ae-trunk-detached",
        "actor_critic_gae.py",
        "x_hat = agent.decoder(agent.trunk(x))",
        "x_hat = agent.decoder(agent.trunk(x).detach())",
        [A2C + "test_online_the_trunk_gets_a2cs_gradient_plus_ae_coef_times_the_autoencoders"],
    ),
    (
        "a2c-ae-offline-fine-tuned",
        "actor_critic_gae.py",
        "nn.ModuleList([agent.trunk, agent.decoder]).requires_grad_(False)",
        "nn.ModuleList([agent.trunk, agent.decoder]).requires_grad_(True)",
        [A2C + "test_offline_pretraining_trains_the_autoencoder_alone_and_the_loop_starts_from_it_frozen"],
    ),
    (
        "a2c-ae-offline-thawed-on-resume",
        "actor_critic_gae.py",
        'if args.autoencoder == "offline":  # from here on only the heads learn',
        'if args.autoencoder == "offline" and checkpoint is None:  # from here on only the heads learn',
        [A2C + "test_offline_pretraining_trains_the_autoencoder_alone_and_the_loop_starts_from_it_frozen"],
    ),
    (
        "a2c-ae-offline-pretrains-again-on-resume",
        "actor_critic_gae.py",
        'if args.autoencoder == "offline" and checkpoint is None:  # resumed',
        'if args.autoencoder == "offline":  # resumed',
        [A2C + "test_offline_pretraining_trains_the_autoencoder_alone_and_the_loop_starts_from_it_frozen"],
    ),
    (
        "a2c-ae-image-misses-the-end",
        "actor_critic_gae.py",
        "if decoder and (global_step - args.batch_size) * 10 // end < global_step * 10 // end:",
        "if decoder and global_step % max(end // 10, 1) == 0:",
        [A2C + "test_offline_pretraining_trains_the_autoencoder_alone_and_the_loop_starts_from_it_frozen"],
    ),
    (
        "a2c-ae-pretraining-without-backward",
        "actor_critic_gae.py",
        "losses[-1].backward()",
        "pass",
        [A2C + "test_pretraining_on_a_random_agents_frames_learns_to_reconstruct_them"],
    ),
    (
        "a2c-ae-pretraining-agent-not-random",
        "actor_critic_gae.py",
        "envs.step(np.random.randint(envs.single_action_space.n, size=envs.num_envs))",
        "envs.step(np.zeros(envs.num_envs, dtype=np.int64))",
        [A2C + "test_pretraining_on_a_random_agents_frames_learns_to_reconstruct_them"],
    ),
    (
        "a2c-ae-pretraining-not-averaged",
        "actor_critic_gae.py",
        "all_reduce_mean(agent, False, world)",
        "pass",
        [A2C + "test_two_offline_autoencoder_processes_under_torchrun_stay_identical"],
    ),
    (
        "a2c-ae-on-vectors",
        "actor_critic_gae.py",
        'if args.autoencoder != "none" and len(obs_space.shape) == 1:',
        "if False:",
        [A2C + "test_autoencoder_flags_out_of_range_are_refused_in_one_line"],
    ),
    (
        "a2c-ae-steps-unchecked",
        "actor_critic_gae.py",
        'sizes += " autoencoder_steps" + (',
        "sizes += (",
        [A2C + "test_autoencoder_flags_out_of_range_are_refused_in_one_line"],
    ),
    (
        "a2c-ae-coef-unchecked",
        "actor_critic_gae.py",
        '"vf_coef ent_coef ae_coef")',
        '"vf_coef ent_coef")',
        [A2C + "test_autoencoder_flags_out_of_range_are_refused_in_one_line"],
    ),
    # dqn_atari.py
    (
        "dqn-td-no-terminal",
        "dqn_atari.py",
        "return rewards + gamma * (~terminated).to(rewards.dtype) * next_value",
        "return rewards + gamma * next_value",
        [DQN + "test_td_targets_match_brute_force"],
    ),
    (
        "dqn-double-q-target-argmax",
        "dqn_atari.py",
        "next_value = next_q_target.gather(1, next_q_online.argmax(1, keepdim=True)).squeeze(1)",
        "next_value = next_q_target.gather(1, next_q_target.argmax(1, keepdim=True)).squeeze(1)",
        [DQN + "test_td_targets_match_brute_force"],
    ),
    (
        "dqn-loss-mse-for-huber",
        "dqn_atari.py",
        'td_loss = F.smooth_l1_loss(q_taken, y) if loss == "huber" else F.mse_loss(q_taken, y)',
        "td_loss = F.mse_loss(q_taken, y)",
        [DQN + "test_dqn_loss_matches_brute_force"],
    ),
    (
        "dqn-loss-ignores-double-q",
        "dqn_atari.py",
        'next_q_online = q_network(b["next_obs"]) if double_q else None',
        'next_q_online = target_network(b["next_obs"]) if double_q else None',
        [DQN + "test_dqn_loss_matches_brute_force"],
    ),
    (
        "dqn-stack-crosses-episode",
        "dqn_atari.py",
        "frames[:, :-1] *= ~started_later[:, :, None, None]",
        "pass",
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-n-step-undiscounted",
        "dqn_atari.py",
        "returns += going * discounts * self.rewards[ends, cols]",
        "returns += going * self.rewards[ends, cols]",
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-n-step-crosses-episode-end",
        "dqn_atari.py",
        "going &= ~terminated & ~self.last[ends, cols] & (ends != newest)",
        "going &= ~terminated & (ends != newest)",
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-n-step-crosses-the-cursor",
        "dqn_atari.py",
        "going &= ~terminated & ~self.last[ends, cols] & (ends != newest)",
        "going &= ~terminated & ~self.last[ends, cols]",
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-n-step-bootstraps-from-s-t+1",
        "dqn_atari.py",
        '"next_obs": self.stacks(ends, cols)',
        '"next_obs": self.stacks(slots + 1, cols)',
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-n-step-not-used",
        "dqn_atari.py",
        "b = replay.sample(args.batch_size, device, args.n_step, args.gamma)",
        "b = replay.sample(args.batch_size, device, 1, args.gamma)",
        [DQN + "test_loop_learns_from_n_step_targets"],
    ),
    (
        "dqn-samples-newest-slot",
        "dqn_atari.py",
        "span = np.where(full, self.cap - self.stack, pos - 1)",
        "span = np.where(full, self.cap - self.stack, pos)",
        [DQN + "test_replay_new_episodes_after_resume_never_pairs_two_games"],
    ),
    (
        "dqn-samples-overwritten-history",
        "dqn_atari.py",
        "i = np.where(full, pos + self.stack - 1, 0)",
        "i = np.where(full, pos, 0)",
        [DQN + "test_replay_rebuilds_the_environments_transitions_across_episodes_and_wraparound"],
    ),
    (
        "dqn-final-frame-not-stored",
        "dqn_atari.py",
        "self._write(e, final_obs[e][-1], 0, 0.0, False, False, True)",
        "self._write(e, obs[e, -1], 0, 0.0, False, False, True)",
        [DQN + "test_replay_truncation_bootstraps_from_the_final_frame_and_termination_does_not"],
    ),
    (
        "dqn-life-loss-not-terminal",
        "dqn_atari.py",
        'terminal = terminations | (infos["life_lost"] & ~dones)',
        "terminal = terminations",
        [DQN + "test_loop_logs_unclipped_whole_game_returns_and_stores_clipped_rewards"],
    ),
    (
        "dqn-rewards-not-clipped",
        "dqn_atari.py",
        'replay.add(obs, actions, np.sign(rewards), terminal, dones, infos.get("final_obs"))',
        'replay.add(obs, actions, rewards, terminal, dones, infos.get("final_obs"))',
        [DQN + "test_loop_logs_unclipped_whole_game_returns_and_stores_clipped_rewards"],
    ),
    (
        "dqn-maxpool-last-frame-only",
        "dqn_atari.py",
        "return np.maximum(last_two[0], last_two[-1]), total, terminated, truncated, info",
        "return last_two[-1], total, terminated, truncated, info",
        [DQN + "test_max_and_skip_repeats_sums_and_maxes_the_last_two_frames"],
    ),
    (
        "dqn-noop-zero",
        "dqn_atari.py",
        "for _ in range(self.unwrapped.np_random.integers(1, 31)):",
        "for _ in range(self.unwrapped.np_random.integers(0, 30)):",
        [DQN + "test_noop_reset_takes_between_1_and_30_noops"],
    ),
    (
        "dqn-stack-not-zeroed",
        "dqn_atari.py",
        'padding_type="zero")  # zeros before the first',
        'padding_type="reset")  # zeros before the first',
        [DQN + "test_real_game_life_loss_and_stack_shape"],
    ),
    (
        "dqn-epsilon-schedule",
        "dqn_atari.py",
        "return start + (end - start) * t / duration if t < duration else end",
        "return start + (end - start) * t / duration if t < duration else start",
        [DQN + "test_epsilon_as_the_loop_acts_over_a_run_and_after_a_resume"],
    ),
    (
        "dqn-target-never-updated",
        "dqn_atari.py",
        "tp.data.lerp_(p.data, args.tau)  # tau = 1: a copy",
        "pass",
        [DQN + "test_target_network_is_a_copy_of_the_online_network_after_each_target_update"],
    ),
    (
        "dqn-resume-restretches-epsilon",
        "dqn_atari.py",
        'explore_steps = int(args.exploration_fraction * state["schedule_timesteps"])',
        "explore_steps = int(args.exploration_fraction * args.total_timesteps)",
        [DQN + "test_epsilon_as_the_loop_acts_over_a_run_and_after_a_resume"],
    ),
    (
        "dqn-resume-replay-lost",
        "dqn_atari.py",
        'replay.load_state_dict(checkpoint["replay"])',
        "pass",
        [DQN + "test_checkpoint_then_resume_restores_networks_optimizer_step_and_replay"],
    ),
    (
        "dqn-fire-after-life-loss",
        "dqn_atari.py",
        'if self.fire and info["lives"] < self.lives and not (terminated or truncated):',
        "if False:",
        [DQN + "test_fire_on_start_presses_fire_at_reset_and_after_each_lost_life_never_after_game_over"],
    ),
    (
        "dqn-epsilon-restarts-on-resume",
        "dqn_atari.py",
        "epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step)",
        "epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step - start_step)",
        [DQN + "test_epsilon_as_the_loop_acts_over_a_run_and_after_a_resume"],
    ),
    (
        "dqn-v5-not-sticky",
        "dqn_atari.py",
        '0.25 if sticky or env_id.startswith("ALE/") else 0.0',
        "0.25 if sticky else 0.0",
        [DQN + "test_sticky_actions_as_the_emulator_plays_them"],
    ),
    (
        "dqn-sticky-flag-ignored",
        "dqn_atari.py",
        '0.25 if sticky or env_id.startswith("ALE/") else 0.0',
        '0.25 if env_id.startswith("ALE/") else 0.0',
        [DQN + "test_sticky_actions_as_the_emulator_plays_them"],
    ),
    (
        "dqn-frame-skip-3",
        "dqn_atari.py",
        "        for _ in range(4):",
        "        for _ in range(3):",
        [DQN + "test_real_game_plays_1_to_30_noop_frames_at_reset_and_4_frames_a_step"],
    ),
    (
        "dqn-one-noop-at-reset",
        "dqn_atari.py",
        "for _ in range(self.unwrapped.np_random.integers(1, 31)):",
        "for _ in range(1):",
        [DQN + "test_real_game_plays_1_to_30_noop_frames_at_reset_and_4_frames_a_step"],
    ),
    (
        "dqn-fire-only-in-breakout",
        "dqn_atari.py",
        'fire="FIRE" in env.unwrapped.get_action_meanings()',
        'fire=atari_game(env_id) == "Breakout"',
        [DQN + "test_fire_is_pressed_in_every_game_whose_action_set_has_it"],
    ),
    (
        "dqn-checkpoint-whole-replay",
        "dqn_atari.py",
        "n = int(np.where(self.full, self.cap, self.pos).max())",
        "n = self.cap",
        [DQN + "test_replay_checkpoint_holds_the_filled_slots_only"],
    ),
    (
        "dqn-checkpoint-replay-misses-a-column",
        "dqn_atari.py",
        "n = int(np.where(self.full, self.cap, self.pos).max())",
        "n = int(self.pos.max())",
        [DQN + "test_replay_checkpoint_holds_the_filled_slots_only"],
    ),
    # dqn_per_her.py
    (
        "ph-sumtree-parent-sum",
        "dqn_per_her.py",
        "self.nodes[i] = self.nodes[2 * i] + self.nodes[2 * i + 1]",
        "self.nodes[i] = self.nodes[2 * i]",
        [PER_HER + "test_sum_tree_nodes_are_sums_of_their_leaves_after_any_updates"],
    ),
    (
        "ph-sumtree-find-no-subtract",
        "dqn_per_her.py",
        "values = np.where(right, values - left, values)",
        "values = np.where(right, values, values)",
        [PER_HER + "test_sum_tree_find_returns_the_leaf_whose_prefix_interval_holds_the_value"],
    ),
    (
        "ph-priority-no-alpha",
        "dqn_per_her.py",
        "self.tree.update(idx, priorities**self.alpha)",
        "self.tree.update(idx, priorities)",
        [PER_HER + "test_importance_weights_match_brute_force_and_alpha_is_applied"],
    ),
    (
        "ph-weights-not-normalised",
        "dqn_per_her.py",
        "return (w / w.max()).astype(np.float32)",
        "return w.astype(np.float32)",
        [PER_HER + "test_importance_weights_match_brute_force_and_alpha_is_applied"],
    ),
    (
        "ph-weights-exponent-sign",
        "dqn_per_her.py",
        "w = (n * probabilities) ** -beta",
        "w = (n * probabilities) ** beta",
        [PER_HER + "test_importance_weights_match_brute_force_and_alpha_is_applied"],
    ),
    (
        "ph-new-transition-priority",
        "dqn_per_her.py",
        "self.tree.update(idx, np.full(len(idx), self.max_priority**self.alpha))",
        "self.tree.update(idx, np.full(len(idx), 1.0))",
        [PER_HER + "test_sampled_priorities_are_updated_and_new_transitions_get_the_largest"],
    ),
    (
        "ph-no-priority-update",
        "dqn_per_her.py",
        'replay.update_priorities(b["idx"], td_errors.cpu().numpy())',
        "pass",
        [PER_HER + "test_the_loop_updates_priorities_and_passes_importance_weights_to_the_loss"],
    ),
    (
        "ph-loss-ignores-weights",
        "dqn_per_her.py",
        'td_loss = (b["weights"] * F.smooth_l1_loss(q_taken, y, reduction="none")).mean()',
        "td_loss = F.smooth_l1_loss(q_taken, y)",
        [PER_HER + "test_dqn_loss_is_the_weighted_mean_huber_error_against_brute_force_targets"],
    ),
    (
        "ph-td-no-terminal",
        "dqn_per_her.py",
        "return rewards + gamma * (~terminated).to(rewards.dtype) * next_value",
        "return rewards + gamma * next_value",
        [PER_HER + "test_td_targets_match_brute_force"],
    ),
    (
        "ph-hardcoded-clip",
        "dqn_per_her.py",
        "y = y.clamp(*bounds)",
        "y = y.clamp(-1.0 / (1.0 - args.gamma), 0.0)",
        [PER_HER + "test_her_learns_a_goal_environment_with_positive_rewards_that_ends_at_the_goal"],
    ),
    (
        "ph-bounds-without-zero",
        "dqn_per_her.py",
        "lo, hi = min(0.0, r_min), max(0.0, r_max)",
        "lo, hi = r_min, r_max",
        [PER_HER + "test_target_bounds_hold_every_discounted_return_of_the_rewards_seen"],
    ),
    (
        "ph-her-future-from-start",
        "dqn_per_her.py",
        'first = t if strategy == "future" else start',
        "first = start",
        [PER_HER + "test_relabelled_goal_positions_stay_in_the_episode_and_wrap_around_the_ring"],
    ),
    (
        "ph-her-ratio",
        "dqn_per_her.py",
        'b["relabelled"] = self.rng.random(len(b["idx"])) < k / (k + 1)',
        'b["relabelled"] = self.rng.random(len(b["idx"])) < 1 / (k + 1)',
        [PER_HER + "test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals"],
    ),
    (
        "ph-her-reward-not-recomputed",
        "dqn_per_her.py",
        'b["rewards"][rows] = compute_reward(self.next_achieved[t], goals, {})',
        "pass",
        [PER_HER + "test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals"],
    ),
    (
        "ph-her-next-goal-not-relabelled",
        "dqn_per_her.py",
        'b["next_x"][rows, -goals.shape[1] :] = goals',
        "pass",
        [PER_HER + "test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals"],
    ),
    (
        "ph-her-terminal-not-recomputed",
        "dqn_per_her.py",
        'b["terminated"][rows] = compute_terminated(self.next_achieved[t], goals, {})',
        "pass",
        [PER_HER + "test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals"],
    ),
    (
        "ph-ring-no-reanchor",
        "dqn_per_her.py",
        "self.episode_start[rest] = oldest",
        "pass",
        [PER_HER + "test_relabelling_never_crosses_into_the_episode_that_overwrote_part_of_its_own"],
    ),
    (
        "ph-plain-bootstrap-next-episode",
        "dqn_per_her.py",
        'final_x[i] = network_input(infos["final_obs"][i])',
        "pass",
        [PER_HER + "test_plain_replay_stores_the_true_final_observation_and_the_termination_flag"],
    ),
    (
        "ph-plain-truncation-terminal",
        "dqn_per_her.py",
        "replay.add(x, actions, rewards, terminations, final_x)",
        "replay.add(x, actions, rewards, dones, final_x)",
        [PER_HER + "test_plain_replay_stores_the_true_final_observation_and_the_termination_flag"],
    ),
    (
        "ph-resume-optimizer-lost",
        "dqn_per_her.py",
        "module.load_state_dict(checkpoint[name])",
        'module.load_state_dict(checkpoint[name]) if name != "optimizer" else None',
        [PER_HER + "test_checkpoint_then_resume_restores_networks_optimizer_step_and_replay"],
    ),
    (
        "ph-her-vs-plain",
        "dqn_per_her.py",
        'final = infos["final_obs"][i] if dones[i] else {k: v[i] for k, v in next_obs.items()}',
        "final = {k: v[i] for k, v in next_obs.items()}",
        [PER_HER + "test_sampled_batches_relabel_k_of_k_plus_1_goals_with_their_own_episodes_later_goals"],
    ),
    (
        "ph-plain-dqn-learns-from-its-own-state",
        "dqn_per_her.py",
        "replay.add(x, actions, rewards, terminations, final_x)",
        "replay.add(x, actions, rewards, terminations, x)",
        [PER_HER + "test_her_solves_10_bits_where_plain_dqn_fails_and_plain_dqn_solves_3_bits"],
    ),
    (
        "ph-epsilon-stretched-by-resume",
        "dqn_per_her.py",
        "explore_steps = int(args.exploration_fraction * schedule_timesteps)",
        "explore_steps = int(args.exploration_fraction * args.total_timesteps)",
        [PER_HER + "test_epsilon_decays_over_its_fraction_of_the_first_length_through_a_stop_and_an_extending_resume"],
    ),
    (
        "ph-epsilon-restarts-at-resume",
        "dqn_per_her.py",
        "epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step)",
        "epsilon = linear_schedule(args.start_e, args.end_e, explore_steps, global_step - start_step)",
        [PER_HER + "test_epsilon_decays_over_its_fraction_of_the_first_length_through_a_stop_and_an_extending_resume"],
    ),
    (
        "ph-beta-stretched-by-resume",
        "dqn_per_her.py",
        "beta = linear_schedule(args.per_beta0, 1.0, schedule_timesteps, global_step)",
        "beta = linear_schedule(args.per_beta0, 1.0, args.total_timesteps, global_step)",
        [PER_HER + "test_per_beta_anneals_over_the_first_length_through_a_stop_and_an_extending_resume"],
    ),
    (
        "ph-success-required-of-the-env",
        "dqn_per_her.py",
        'if "is_success" in infos["final_info"]:',
        "if True:",
        [PER_HER + "test_a_goal_environment_that_reports_no_success_trains_and_counts_none"],
    ),
    (
        "her-replay-memory-unchecked",
        "dqn_per_her.py",
        "if (fit := int(0.8 * memory // each)) < args.buffer_size:",
        "if (fit := int(0.8 * memory // each)) < 0:",
        [SHARED + "test_bad_input_exits_2_naming_the_flag[dqn_per_her.py-flags50---buffer-size]"],
    ),
    (
        "loop-categories-as-numbers-reinforce",
        "reinforce.py",
        "onehot = isinstance(env.observation_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete)",
        "onehot = isinstance(env.observation_space, gym.spaces.Discrete)",
        [SHARED + "test_discrete_observations_are_one_hot_and_train[reinforce.py]"],
    ),
    (
        "loop-categories-as-numbers-a2c",
        "actor_critic_gae.py",
        "if isinstance(env.observation_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):  # categories: one-hot",
        "if False:  # categories: one-hot",
        [SHARED + "test_discrete_observations_are_one_hot_and_train[actor_critic_gae.py]"],
    ),
    (
        "loop-categories-as-numbers-her",
        "dqn_per_her.py",
        "return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32) if onehot else env",
        "return gym.wrappers.FlattenObservation(env) if onehot else env",
        [SHARED + "test_discrete_observations_are_one_hot_and_train[dqn_per_her.py]"],
    ),
    # shared plumbing (one copy per script; planted in one of them)
    (
        "shared-resume-default-length",
        "actor_critic_gae.py",
        'now |= given & {"total_timesteps", "checkpoint_every", "save_model"}',
        'now |= {"total_timesteps", "checkpoint_every", "save_model"}',
        [SHARED + "test_resume_continues_the_same_run"],
    ),
    (
        "shared-resume-given-means-not-default",
        "reinforce.py",
        'now |= given & {"total_timesteps", "checkpoint_every", "save_model"}',
        'now |= {n for n in ("total_timesteps", "checkpoint_every", "save_model") if getattr(args, n) != getattr(Args, n)}',
        [SHARED + "test_resume_goes_by_what_the_command_line_said"],
    ),
    (
        "shared-resume-ignored-flags-unsaid",
        "dqn_per_her.py",
        "if ignored := [name for name in kept if name in given and kept[name] != getattr(args, name)]:",
        "if ignored := []:",
        [SHARED + "test_resume_goes_by_what_the_command_line_said"],
    ),
    (
        "shared-resume-foreign-checkpoint",
        "dqn_per_her.py",
        'if owner != script or (args.resume and "global_step" not in saved):',
        'if owner is None or (args.resume and "global_step" not in saved):',
        [SHARED + "test_resume_refuses_a_bad_file_in_one_line_and_changes_nothing"],
    ),
    # the user's loop: run folders, stop and resume, evaluation of a saved model, flags and messages
    (
        "loop-exit-status-0-after-a-signal",
        "reinforce.py",
        'sys.exit(128 + signum if (signum := main(tyro.cli(Args))["signal"]) else 0)',
        'sys.exit(0 if (signum := main(tyro.cli(Args))["signal"]) else 0)',
        [SHARED + "test_ctrl_c_writes_the_checkpoint_and_summary_then_exits_130"],
    ),
    (
        "loop-emulator-banner-first",
        "dqn_atari.py",
        "ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)",
        "ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Info)",
        [SHARED + "test_ctrl_c_writes_the_checkpoint_and_summary_then_exits_130[dqn_atari.py]"],
    ),
    (
        "loop-run-folder-keeps-the-colon",
        "reinforce.py",
        "re.sub('[/:]', '-', args.env_id)",
        "re.sub('/', '-', args.env_id)",
        [SHARED + "test_a_users_own_environment_in_module_form_without_render_mode[reinforce.py]"],
    ),
    (
        "loop-no-module-form-hint",
        "actor_critic_gae.py",
        """(" A package's id: module:EnvId" if isinstance(e, gym.error.UnregisteredEnv) else "")""",
        """("" if isinstance(e, gym.error.UnregisteredEnv) else "")""",
        [SHARED + "test_env_id_typos_get_gymnasiums_suggestion_in_one_line[actor_critic_gae.py]"],
    ),
    (
        "loop-resume-past-the-end-trains-again",
        "dqn_per_her.py",
        "        raise SystemExit(0)",
        "        pass",
        [SHARED + "test_resume_continues_the_same_run[dqn_per_her.py]"],
    ),
    (
        "loop-rounded-end-not-the-runs-end",
        "actor_critic_gae.py",
        "args.total_timesteps = end  # what runs",
        "pass  # what runs",
        [SHARED + "test_resuming_a_finished_run_trains_nothing_and_leaves_its_folder[actor_critic_gae.py]"],
    ),
    (
        "loop-no-checkpoint-on-stop",
        "dqn_per_her.py",
        'return stop["signal"] is not None or (',
        "return False or (",
        [SHARED + "test_ctrl_c_writes_the_checkpoint_and_summary_then_exits_130"],
    ),
    (
        "loop-resume-forgets-the-networks",
        "reinforce.py",
        "module.load_state_dict(checkpoint[name])",
        'module.load_state_dict(checkpoint[name]) if "optimizer" in name else None',
        [SHARED + "test_restore_loads_every_module_the_state_by_name_and_the_random_streams[reinforce.py]"],
    ),
    (
        "loop-evaluate-with-the-command-lines-flags",
        "reinforce.py",
        "args, step, was = dataclasses.replace(args, **kept),",
        "args, step, was = args,",
        [SHARED + "test_save_model_say_where_it_went_and_evaluate_it_without_training"],
    ),
    (
        "loop-evaluate-an-untrained-network",
        "dqn_per_her.py",
        'q_network.load_state_dict(checkpoint["q_network"])',
        "pass",
        [SHARED + "test_save_model_say_where_it_went_and_evaluate_it_without_training"],
    ),
    (
        "loop-torch-threads-ignored",
        "actor_critic_gae.py",
        "torch.set_num_threads(torch_threads or torch.get_num_threads())",
        "pass",
        [SHARED + "test_short_run_writes_standard_keys"],
    ),
    (
        "loop-nested-run-folder",
        "dqn_atari.py",
        "{re.sub('[/:]', '-', args.env_id)}__",
        "{args.env_id}__",
        [SHARED + "test_run_folders_are_flat_for_namespaced_ids"],
    ),
    (
        "loop-rounding-unsaid",
        "reinforce.py",
        "if (steps := args.num_updates * args.batch_size) != args.total_timesteps:",
        "if (steps := args.num_updates * args.batch_size) is None:",
        [SHARED + "test_a_run_length_that_is_rounded_says_so"],
    ),
    (
        "loop-never-learns-accepted",
        "dqn_atari.py",
        "if args.learning_starts + args.train_frequency > args.total_timesteps:",
        "if False:",
        [SHARED + "test_bad_input_exits_2_naming_the_flag"],
    ),
    (
        "loop-video-names-one-package",
        "reinforce.py",
        'missing.append("pygame")',
        "pass",
        [SHARED + "test_capture_video_names_every_missing_package_in_one_line"],
    ),
    (
        "loop-env-id-error-without-gymnasiums-words",
        "dqn_per_her.py",
        'fail("--env-id", f"{e}" + (',
        'fail("--env-id", "unknown environment" + (',
        [SHARED + "test_env_id_typos_get_gymnasiums_suggestion_in_one_line"],
    ),
    (
        "loop-track-without-wandb",
        "actor_critic_gae.py",
        'if args.track and importlib.util.find_spec("wandb") is None:',
        "if False:",
        [SHARED + "test_track_without_wandb_says_how_to_install_it"],
    ),
    (
        "loop-summary-without-the-model",
        "dqn_atari.py",
        '"".join(f"  saved: {path}\\n" for path in saved)',
        '"".join(f"  saved: {path}\\n" for path in saved[:-1])',
        [SHARED + "test_save_model_say_where_it_went_and_evaluate_it_without_training"],
    ),
    # the restructured loop (issue 13): the shared helpers of section 8
    (
        "loop-checkpoint-only-at-the-end",
        "dqn_atari.py",
        "(after // every > before // every or after >= end)",
        "(after >= end)",
        [SHARED + "test_checkpoint_every_writes_at_each_multiple_and_at_the_end"],
    ),
    (
        "loop-no-checkpoint-at-the-end",
        "reinforce.py",
        "(after // every > before // every or after >= end)",
        "(after // every > before // every)",
        [SHARED + "test_checkpoint_every_writes_at_each_multiple_and_at_the_end"],
    ),
    (
        "loop-range-check-skipped",
        "dqn_per_her.py",
        "if not within(getattr(args, name))",
        "if False",
        [SHARED + "test_bad_input_exits_2_naming_the_flag"],
    ),
    (
        "loop-checkpoint-without-the-step",
        "actor_critic_gae.py",
        'state = {"global_step": global_step, "lr_from": lr_now, "run_dir": run_dir}',
        'state = {"global_step": 0, "lr_from": lr_now, "run_dir": run_dir}',
        [A2C + "test_checkpoint_then_resume_restores_networks_optimizer_and_step"],
    ),
]


def copy_repo(dest: Path):
    for script in SCRIPTS:
        shutil.copy2(ROOT / script, dest / script)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=shutil.ignore_patterns("__pycache__"))


def run_tests(folder: Path, tests: list[str], timeout: int) -> tuple[int, str, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    start = time.time()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return proc.returncode, proc.stdout + proc.stderr, time.time() - start
    except subprocess.TimeoutExpired:
        return -1, "timeout", time.time() - start


def check(mutant, timeout: int) -> dict:
    mid, script, old, new, tests = mutant
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mid}-") as tmp:
        folder = Path(tmp)
        copy_repo(folder)
        text = (folder / script).read_text()
        count = text.count(old)
        if count != 1:
            return {"id": mid, "script": script, "status": "stale", "detail": f"original text found {count} times"}
        (folder / script).write_text(text.replace(old, new))
        code, out, seconds = run_tests(folder, tests, timeout)
    failed = re.findall(r"^FAILED (\S+)", out, re.MULTILINE)
    if code == 1 and failed:
        status, detail = "killed", failed[0].split(" - ")[0]
    elif code == -1:
        status, detail = "killed", "timeout"
    elif code == 0:
        status, detail = "survived", ""
    else:  # 2-5: the copy could not even be collected or run: say so rather than count it as caught
        status, detail = "error", out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
    return {
        "id": mid,
        "script": script,
        "status": status,
        "detail": detail,
        "seconds": round(seconds, 1),
        "change": f"{old.strip()} -> {new.strip() or '(deleted)'}",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutants whose id starts with this")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant; a timeout counts as killed")
    parser.add_argument("--record", action="store_true", help=RECORD_HELP + "; needs a clean tree")
    args = parser.parse_args()
    if args.record and commit().endswith("-dirty"):  # before any work, not after it
        sys.exit("--record needs a clean tree: the result must name the commit that made it")
    mutants = [m for m in MUTANTS if m[0].startswith(args.only)]
    assert len({m[0] for m in MUTANTS}) == len(MUTANTS), "mutant ids must be unique"
    start = time.time()

    # the tests must pass on the unchanged copy, or a 'kill' proves nothing
    with tempfile.TemporaryDirectory(prefix="mutant-none-") as tmp:
        copy_repo(Path(tmp))
        tests = sorted({t for m in mutants for t in m[4]})
        code, out, seconds = run_tests(Path(tmp), tests, 3 * args.timeout)
        if code != 0:
            sys.exit(f"the unchanged scripts fail their own tests ({seconds:.0f} s):\n{out[-3000:]}")
        print(f"unchanged copy: {len(tests)} test selections pass ({seconds:.0f} s)", flush=True)

    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda m: check(m, args.timeout), mutants):
            results.append(result)
            print(
                f"{result['status']:8} {result['id']:36} {result.get('seconds', 0):6.1f} s  {result['detail']}",
                flush=True,
            )
    wall = time.time() - start
    killed = sum(r["status"] == "killed" for r in results)
    summary = f"{killed} of {len(results)} mutants killed in {wall:.0f} s ({args.jobs} at a time)"
    print(summary)

    meta = {
        "commit": commit(),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "wall_s": round(wall, 1),
        "summary": summary,
    }
    if args.record and meta["commit"].endswith("-dirty"):  # the tree changed while the mutants ran
        sys.exit("--record needs a clean tree: the result must name the commit that made it")
    folder = output_folder("mutants", args.record)
    (folder / "results.json").write_text(json.dumps({**meta, "mutants": results}, indent=1) + "\n")
    (folder / "results.md").write_text(markdown(meta, results))
    say_wrote(folder, ["results.json", "results.md"], args.record)
    sys.exit(0 if killed == len(results) else 1)


def markdown(meta: dict, results: list[dict]) -> str:
    rows = ["| mutant | script | planted change | result | caught by | s |", "|---|---|---|---|---|---|"]
    for r in results:
        change = r.get("change", "").replace("|", "\\|")
        rows.append(
            f"| {r['id']} | {r['script']} | `{change}` | {r['status']} | {r['detail']} | {r.get('seconds', '')} |"
        )
    return (
        f"{meta['summary']}.\n\nMachine: {meta['machine']}. Commit: `{meta['commit']}`. "
        f"Command: `{meta['command']}`.\n\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
