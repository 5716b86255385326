"""GRPO rollouts are env episodes: rewards as `env.step` returned them, only the policy's tokens trained, each
reflection's summary shown in the next round, and a real SmolLM2 episode through GRPOTrainer's rollout path."""

import numpy as np
import pytest
from conftest import Judge
from transformers import AutoTokenizer

from starec_env.agents.prompts import SUMMARY_HEAD, PromptConfig
from starec_env.agents.society import Population
from starec_env.envs import UserEnv
from starec_env.trainers.rollouts import EnvRollouts, episode_reward, reflection_reward
from starec_env.trainers.sft import model_path

SHORT = PromptConfig(history=5, think=True)
RANKING = "<think>They like dramas.</think>\n[" + ", ".join(str(i) for i in range(1, 21)) + "]"
REFLECTION = f"it is a classic.\n{SUMMARY_HEAD} This user likes classic films."


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(model_path(None))


def scripted(tokenizer, answers):
    """A stand-in policy (the rollout around it is under test): the i-th call answers every episode with
    `answers[i]`, as token ids ending with the end-of-turn token."""
    calls = []

    def sample(contexts):
        text = answers[min(len(calls), len(answers) - 1)]
        calls.append(contexts)
        ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        return [list(ids) for _ in contexts], None
    return sample, calls


def fresh_env(rollouts, prompt, population=None):
    """A new env at the start of the prompt's episode, and its first observation."""
    env = UserEnv(protocol=rollouts.protocol, mode=rollouts.mode, rounds=rollouts.rounds, split="train",
                  population=population)
    case = rollouts.case_of(prompt)
    observation, _ = env.reset(seed=rollouts.episode_seed(case), options={"case": case})
    return env, observation


def replayed_rewards(rollouts, prompt, actions, population=None):
    """The rewards a fresh env of the same episode returns for the same actions."""
    env, _ = fresh_env(rollouts, prompt, population)
    return [env.step(np.asarray(action))[1] for action in actions]


def segments(ids, mask):
    """The runs of tokens with one mask value, in order: (value, ids)."""
    runs = []
    for token, value in zip(ids, mask):
        if not runs or runs[-1][0] != value:
            runs.append((value, []))
        runs[-1][1].append(token)
    return runs


def test_a_replay_rollout_is_the_env_episode_with_the_policys_tokens_marked(ml1m, tokenizer):
    rollouts = EnvRollouts(ml1m, SHORT, "replay", rounds=2, seed=3)
    (row,) = rollouts.prompts(1)
    sample, calls = scripted(tokenizer, [RANKING, REFLECTION, RANKING])
    result = rollouts.play([row["prompt"]] * 2, tokenizer, sample)
    assert len(calls) == 3  # rank, reflect on the miss, rank again with the new summary
    assert result["env_rewards"][0] == replayed_rewards(rollouts, row["prompt"], result["actions"][0])
    assert result["env_rewards"][0] == result["env_rewards"][1]  # a group shares its user and candidates
    assert result["memory_rewards"][0] == result["env_rewards"][0][1:]  # round 2 prices the reflection
    assert tokenizer.decode(result["prompt_ids"][0]) == tokenizer.apply_chat_template(
        row["prompt"], tokenize=False, add_generation_prompt=True)
    runs = segments(result["completion_ids"][0], result["env_mask"][0])
    assert [value for value, _ in runs] == [1, 0, 1, 0, 1]
    written = [tokenizer.decode(ids, skip_special_tokens=True) for value, ids in runs if value]
    assert written == [RANKING, REFLECTION, RANKING]
    reflection_prompt, next_prompt = (tokenizer.decode(ids) for value, ids in runs if not value)
    assert "Real behaviour: chose" in reflection_prompt and reflection_prompt.endswith("because")
    assert "User preferences: This user likes classic films." in next_prompt  # the rewritten summary
    assert next_prompt.count("<|im_start|>system") == 0  # the ranker's system prompt is not repeated
    assert rollouts.counts["reflection_ok"] == 2
    assert episode_reward(None, result["env_rewards"]) == [np.mean(result["env_rewards"][0])] * 2


def test_a_hit_needs_no_reflection_and_garbage_earns_the_missing_reward(ml1m, tokenizer):
    rollouts = EnvRollouts(ml1m, SHORT, "replay", rounds=2, seed=3)
    (row,) = rollouts.prompts(1)
    sample, calls = scripted(tokenizer, ["I cannot rank these."])
    result = rollouts.play([row["prompt"]], tokenizer, sample)
    _, observation = fresh_env(rollouts, row["prompt"])
    target = ml1m.sequences[int(observation["user"])][-4]  # round 1 of 2 training rounds before validation
    first = 1 + int(np.flatnonzero(observation["candidates"] == target)[0])
    hit = str([first, *(label for label in range(1, 21) if label != first)])
    assert result["env_rewards"] == [[-1.0, -1.0]] and rollouts.counts["ranking_failed"] == 2
    assert len(calls) == 3  # the failed round counted as a miss: a reflection came between the rankings
    sample, calls = scripted(tokenizer, [hit])
    hits = rollouts.play([row["prompt"]], tokenizer, sample)
    assert hits["env_rewards"][0][0] == 1.0 and len(calls) == 2 and hits["memory_rewards"] == [[]]
    assert reflection_reward(None, hits["memory_rewards"]) == [None]  # TRL leaves it out of the sum


def test_simulated_rollouts_give_each_group_member_its_own_user(ml1m, tokenizer):
    judge = Judge(favourite=3)  # the user picks the fourth item it is shown and rates it 4
    rollouts = EnvRollouts(ml1m, SHORT, "simulate", rounds=2, seed=3, population_llm=judge)
    (row,) = rollouts.prompts(1)
    sample, _ = scripted(tokenizer, [RANKING, REFLECTION, RANKING])
    result = rollouts.play([row["prompt"]] * 2, tokenizer, sample)
    assert len(rollouts.populations) == 2 and all(len(p.memories) == 1 for p in rollouts.populations)
    expected = replayed_rewards(rollouts, row["prompt"], result["actions"][0],
                                Population(ml1m, judge, rollouts.agent))
    assert result["env_rewards"] == [expected, expected] and expected[0] == 0.5


def test_a_prompt_the_rollouts_did_not_write_is_refused(ml1m, tokenizer):
    rollouts = EnvRollouts(ml1m, SHORT)
    with pytest.raises(KeyError, match="did not write"):
        rollouts.play([[{"role": "user", "content": "hello"}]], tokenizer, scripted(tokenizer, [RANKING])[0])


@pytest.mark.slow
def test_a_real_episode_through_grpo_trainers_rollout_path(ml1m, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rollouts = EnvRollouts(ml1m, SHORT, "replay", rounds=2, seed=3)
    rows = rollouts.prompts(1)
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=48, report_to="none", use_cpu=True)
    trainer = GRPOTrainer(model=model_path(None), args=args,
                          reward_funcs=[episode_reward, reflection_reward], train_dataset=Dataset.from_list(rows),
                          rollout_func=rollouts)
    result = rollouts([rows[0]["prompt"]] * 2, trainer)
    for actions, rewards in zip(result["actions"], result["env_rewards"]):
        again = replayed_rewards(rollouts, rows[0]["prompt"], actions)
        assert len(rewards) == 2  # a parsed ranking earns what env.step returned, an unparsed one the missing reward
        assert all(reward == expected or (reward == -1.0 and not any(action))
                   for reward, expected, action in zip(rewards, again, actions))
    lengths = [sum(mask) for mask in result["env_mask"]]
    assert all(0 < length <= 3 * 48 for length in lengths)  # two rankings and at most one reflection, 48 each
    assert len(result["completion_ids"][0]) == len(result["env_mask"][0]) == len(result["logprobs"][0])
