import gymnasium as gym
import numpy as np
import pytest
from conftest import Judge
from gymnasium.utils.env_checker import check_env

from starec_env.policies.registry import make_policy
from starec_env.metrics import target_ranks
from starec_env.rewards import positional_reward


@pytest.fixture(scope="module")
def env(ml1m):
    return gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m)


@pytest.mark.parametrize("env_id", ["STARec-ML1M-v0", "STARec-CDs-v0"])
def test_check_env_passes(env_id, ml1m, cds):
    protocol = ml1m if "ML1M" in env_id else cds
    check_env(gym.make(f"starec_env:{env_id}", protocol=protocol).unwrapped, skip_render_check=True)


def test_replay_episode_rewards_a_policys_ranking(env, ml1m):
    pop = make_policy("pop").fit(ml1m.train("full"))
    observation, info = env.reset(seed=0, options={"case": 5})
    assert observation["user"] == ml1m.test.users[5]
    scores = pop.counts[observation["candidates"]]
    _, reward, terminated, truncated, step_info = env.step(scores)
    rank = int(target_ranks(scores[None], ml1m.test.target_index[5:6])[0])
    assert (step_info["rank"], reward, terminated, truncated) == (rank, positional_reward(rank)[0], True, False)
    assert step_info["choice"] == ml1m.test.targets[5] and step_info["ndcg@20"] > 0


def test_same_seed_same_episode(env):
    first, _ = env.reset(seed=7)
    second, _ = env.reset(seed=7)
    assert all(np.array_equal(first[key], second[key]) for key in first)


def test_two_rounds_walk_validation_then_test(ml1m):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, rounds=2)
    observation, _ = env.reset(seed=0, options={"case": 3})
    _, _, terminated, _, info = env.step(np.zeros(20))
    assert not terminated and info["choice"] == ml1m.valid.targets[3]
    second, _, terminated, _, info = env.step(np.zeros(20))
    assert terminated and info["choice"] == ml1m.test.targets[3]


@pytest.mark.parametrize("action, message", [(np.zeros(19), "20 scores"), (np.full(20, np.nan), "finite"),
                                             (np.full(20, np.inf), "finite")])
def test_invalid_actions_are_clear_errors(env, action, message):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_extra_rounds_walk_training_interactions_before_the_fixed_cases(ml1m):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, rounds=4)
    observation, _ = env.reset(seed=1, options={"case": 2})
    sequence = ml1m.sequences[ml1m.test.users[2]]
    choices = []
    for _ in range(4):
        assert len(set(observation["candidates"].tolist()) & set(sequence.tolist())) == 1  # target + non-positives
        observation, _, terminated, _, info = env.step(np.zeros(20))
        choices.append(info["choice"])
    assert terminated and choices == sequence[-4:].tolist()


def test_replay_vector_env_equals_single_envs(ml1m):
    vector = gym.make_vec("starec_env:STARec-ML1M-v0", num_envs=3, protocol=ml1m, rounds=2)
    actions = np.random.default_rng(0).random((3, 20))
    observations, _ = vector.reset(seed=11)
    singles = [gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, rounds=2) for _ in range(3)]
    for i, single in enumerate(singles):
        assert np.array_equal(single.reset(seed=11 + i)[0]["candidates"], observations["candidates"][i])
    for _ in range(2):
        _, rewards, terminated, _, info = vector.step(actions)
        expected = [single.step(actions[i]) for i, single in enumerate(singles)]
        assert rewards.tolist() == [e[1] for e in expected] and info["rank"].tolist() == [e[4]["rank"] for e in expected]
    assert terminated.all()
    observations, rewards, terminated, _, _ = vector.step(actions)  # NEXT_STEP autoreset: a new episode, no reward
    assert not terminated.any() and not rewards.any()


# short prompts and outputs: CI runs on a CPU
SMALL_AGENT = {"prompt": {"summary_tokens": 8, "choice_tokens": 8, "reflection_tokens": 8, "history": 3}}


@pytest.mark.slow
def test_simulate_mode_passes_check_env_and_runs_a_full_episode(ml1m, smollm):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="simulate", rounds=2, llm=smollm,
                   agent={**SMALL_AGENT, "rationale": True})
    check_env(env.unwrapped, skip_render_check=True)
    observation, info = env.reset(seed=3)
    summary = env.unwrapped.population.memories[info["user"]].summary
    assert summary
    for round_index in range(2):
        observation, reward, terminated, _, step = env.step(np.arange(20.0))
        assert step["round"] == round_index and step["choice_rank"] <= 5 and step["rationale"]
        assert step["rating"] in range(1, 6) and step["liked"] == (step["rating"] >= 4)
        assert reward in (1.0, 0.5, -1.0) and step["tokens"] > 0 and step["memory"]["user"] == info["user"]
        assert step["matched"] == (step["choice"] == step["memory"]["history"][-1])
    assert terminated and len(step["memory"]["history"]) == len(ml1m.sequences[info["user"]])


@pytest.mark.slow
def test_simulate_vector_env_equals_single_envs(ml1m, smollm):
    from starec_env.agents.society import AgentConfig, Population

    config = AgentConfig(**SMALL_AGENT)
    vector = gym.make_vec("starec_env:STARec-ML1M-v0", num_envs=2, mode="simulate", rounds=1,
                          population=Population(ml1m, smollm, config))
    actions = np.random.default_rng(1).random((2, 20))
    vector.reset(seed=20)
    batched = [vector.step(actions)[4]]
    population = Population(ml1m, smollm, config)
    for i in range(2):
        single = gym.make("starec_env:STARec-ML1M-v0", mode="simulate", rounds=1, population=population)
        single.reset(seed=20 + i)
        for info in batched:
            step = single.step(actions[i])[4]
            assert (step["choice"], step["rating"]) == (info["choice"][i], info["rating"][i])
            assert step["rationale"] == ""  # none asked for: the step decoded nothing for it


@pytest.mark.slow
def test_a_simulated_user_served_over_http_decides_as_in_process(ml1m, smollm):
    """The env's users pointed at `starec serve` (an openai: spec) pick and rate what the same model in process
    does: likelihood scoring works through the server."""
    import threading

    from starec_env.agents.llm.server import make_server

    server = make_server(smollm, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    served = f"openai:http://127.0.0.1:{server.server_address[1]}/v1#starec"
    try:
        steps = []
        for llm in (served, smollm):
            env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="simulate", llm=llm,
                           agent={**SMALL_AGENT, "reflect": "never"})
            env.reset(seed=5)
            steps.append(env.step(np.arange(20.0))[4])
        assert (steps[0]["choice"], steps[0]["rating"]) == (steps[1]["choice"], steps[1]["rating"])
    finally:
        server.shutdown()


def test_a_session_grows_the_history_with_the_users_own_picks(ml1m):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="session", rounds=3, llm=Judge(3))
    observation, info = env.reset(seed=0)
    history = list(ml1m.test.histories[info["case"]][-40:])
    assert observation["history"][-len(history):].tolist() == history
    ranking = -np.arange(20.0)  # the policy's order is the candidates' order
    for step in range(3):
        candidates = observation["candidates"]
        assert not set(candidates.tolist()) & set(history)  # only items the user has not had
        observation, reward, terminated, truncated, info = env.step(ranking)
        assert info["choice"] in candidates[:5].tolist() and info["choice_rank"] <= 5 and info["rating"] == 4
        assert reward in (1.0, 0.5) and info["liked"] and not info["left"] and "rank" not in info
        history.append(info["choice"])
        assert observation["history"][-1] == info["choice"] and info["memory"]["history"][-1] == info["choice"]
        assert info["memory"]["reflections"] == []  # no logged item, nothing to reflect on
        assert (terminated, truncated) == (False, step == 2)
    session = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="session", rounds=5, llm=Judge(3))
    check_env(session.unwrapped, skip_render_check=True)


def test_an_unsatisfied_user_leaves_the_session_after_patience_dislikes(ml1m):
    env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="session", rounds=10, patience=2,
                   llm=Judge(0))
    env.reset(seed=1)
    first = env.step(np.zeros(20))
    second = env.step(np.zeros(20))
    assert first[1] == second[1] == -1.0 and first[4]["rating"] == 1 and not first[4]["left"]
    assert (first[2], second[2], second[3], second[4]["left"]) == (False, True, False, True)
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(np.zeros(20))


def test_a_session_vector_env_restarts_truncated_users(ml1m):
    vector = gym.make_vec("starec_env:STARec-ML1M-v0", num_envs=2, mode="session", rounds=1, protocol=ml1m,
                          llm=Judge(3))
    vector.reset(seed=4)
    _, rewards, terminated, truncated, _ = vector.step(np.zeros((2, 20)))
    assert truncated.all() and not terminated.any() and (rewards > 0).all()
    _, rewards, _, truncated, _ = vector.step(np.zeros((2, 20)))  # the restart step: no user acts
    assert not truncated.any() and (rewards == 0).all()


def test_observation_cases_let_any_policy_act(env, ml1m):
    from starec_env.envs import observation_cases

    pop = make_policy("pop").fit(ml1m.train("full"))
    observation, _ = env.reset(seed=0, options={"case": 9})
    cases = observation_cases(observation)
    assert cases.histories[0].tolist() == ml1m.test.histories[9][-40:].tolist()
    assert np.array_equal(pop.score(cases)[0], pop.counts[ml1m.test.candidates[9]])


@pytest.mark.slow
def test_a_grounded_user_follows_its_prior_and_repeats_under_a_seed(ml1m, smollm):
    """With the prior's weight far above the LLM's, the simulated user picks the prior's favourite shown item."""
    from starec_env.agents.grounded import GroundedChoice, Grounding

    favourite = lambda cases: (cases.candidates == cases.candidates.max(1, keepdims=True)) * 50.0
    grounding = Grounding(GroundedChoice(llm_weight=0.0, prior_weight=10.0), favourite)
    picks = []
    for _ in range(2):
        env = gym.make("starec_env:STARec-ML1M-v0", protocol=ml1m, mode="simulate", llm=smollm, agent=SMALL_AGENT,
                       grounding=grounding)
        env.reset(seed=4)
        step = env.step(np.arange(20.0))[4]
        shown = env.unwrapped._rounds[0].candidates[np.argsort(-np.arange(20.0))][:SMALL_AGENT.get("shown", 5)]
        assert step["choice"] == shown.max() and step["rating"] in range(1, 6)
        picks.append(step["choice"])
    assert picks[0] == picks[1]
