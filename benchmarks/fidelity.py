"""`starec fidelity`: how closely simulated users match held-out real behaviour.

The cases are fixed and the same for every row. Each protocol test user is simulated from the history its test
case shows (every positive before the test item) and answers:

- **choice**: pick one of `shown` items (the real test item and `shown - 1` of its protocol negatives, in a seeded
  random order) → pick accuracy, chance 1/shown (and "no list": the shown item the user's ordering utility puts
  first, as a user asked what it chooses next without the list in its prompt would pick); and order all 20
  protocol candidates (asked what it chooses next, each candidate scored as the answer) → NDCG@1/5/10/20, on the
  same cases as the policy table;
- **like / dislike and rating**: every item the user really rated, at any rating, at or after their validation
  interaction and not in that history (held out by time: neither the memory, nor the summary, nor any training view
  contains them), and `unrated` items the user never rated (the case's protocol negatives). Liked is a real rating
  of 4 or more, disliked 2 or less; agreement is reported at liked : not-liked ratios 1:1, 1:3 and 1:9 against the
  unrated items and against the real dislikes; ratings by MAE, RMSE, Spearman's ρ and the Jensen-Shannon divergence
  of the rating histograms.

Rows: `random`; `pop` and `collaborative` (the training-view popularity, or the `prior` policy's scores, as the
user's utility); `llm` (the LLM user: first summary, likelihood choice, digit-likelihood rating, as in the
environment); `llm-slow` (the same user after one feedback-loop round on its validation case: it picks, reflects on
a miss and rewrites its summary); and, with `fit`, `grounded` (`agents.grounded`: LLM and prior combined, its two
weights fitted on the validation cases only). Score-based users rate by quantile: an item's percentile among the
user's items, mapped onto the training rating histogram. Standard errors come from resampling users.

An LLM row saves its answers every `chunk` users (`partial/`, with the population's summaries), and a finished one
its answers (`answers/`): `starec fidelity --resume DIR` continues a killed run where it stopped, under the same
settings only, keeping every answer saved before the kill.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from starec_env.agents import fast, prompts
from starec_env.agents.grounded import GroundedChoice
from starec_env.agents.llm import load_llm
from starec_env.agents.society import AgentConfig, FeedbackRequest, Population
from starec_env.datasets import dataset_spec
from starec_env.files import atomic_path, read_json, write_json, write_text
from starec_env.metrics import (RATING_SCALE, agreement_at_ratio, bootstrap_se, js_divergence, ndcg, rating_errors,
                                rating_histogram, target_ranks)
from starec_env.policies.base import PopularityPolicy, RandomPolicy
from starec_env.policies.registry import make_policy
from starec_env.protocol import Cases, Protocol, build_protocol, default_config
from starec_env.records import run_record

ROWS = ("random", "pop", "collaborative", "llm", "llm-slow")
RATIOS = (1, 3, 9)
KS = (1, 5, 10, 20)
LIKED_FROM, DISLIKED_TO = 4, 2


@dataclass
class FidelityConfig:
    """`starec fidelity`: which simulated users, on how many held-out users, with which LLM and prior."""

    dataset: str = field(default="ml-1m", metadata={"help": "ml-1m, amazon-cds or a path to data with ratings"})
    rows: tuple[str, ...] = field(default=ROWS, metadata={"help": f"simulated users to measure, of {ROWS}"})
    n_users: int = field(default=200, metadata={"flag": "--users", "help": "test users the LLM rows answer for"})
    cheap_users: int = field(default=1000, metadata={
        "help": "test users for the rows without an LLM (random, pop, collaborative)"})
    shown: int = field(default=5, metadata={"help": "items shown in the choice test (the real one among them)"})
    unrated: int = field(default=3, metadata={"help": "never-rated items per user in the like / dislike test"})
    prior: str = field(default="co-liked", metadata={
        "help": "the policy whose scores are the collaborative user's utility and the grounded user's prior"})
    fit: bool = field(default=False, metadata={
        "help": "add the grounded user, its weights fitted on validation cases only"})
    model: str | None = field(default=None, metadata={"help": "LLM spec (default: the embedded SmolLM2)"})
    dtype: str = field(default="", metadata={
        "help": "weights of an in-process (hf:) model: float32 or bfloat16 (default: bfloat16 where native)"})
    seed: int = field(default=0, metadata={"help": "protocol seed and the seed of every random draw"})
    resamples: int = field(default=200, metadata={"help": "bootstrap resamples of users for standard errors"})
    chunk: int = field(default=16, metadata={
        "help": "LLM users answered together (first summaries in one batch) between checkpoints"})
    out: str = field(default="results", metadata={"help": "parent folder of the results folder"})
    data_path: str | None = field(default=None, metadata={"flag": "--path", "help": "data folder"})

    def __post_init__(self):
        unknown = set(self.rows) - set(ROWS)
        if unknown:
            raise ValueError(f"unknown fidelity rows {sorted(unknown)}; expected some of {ROWS}")
        if not 2 <= self.shown <= 20 or self.unrated < 1 or self.n_users < 1 or self.chunk < 1:
            raise ValueError(f"need 2 <= shown <= 20, unrated >= 1, users >= 1 and chunk >= 1; got {self.shown}, "
                             f"{self.unrated}, {self.n_users}, {self.chunk}")


# ------------------------------------------------------------------------------------------------- cases
@dataclass
class FidelityCases:
    """What every simulated user answers, per user: the ranking case, the shown items, and the items to rate."""

    ranking: Cases  # the protocol's test cases: history, 20 candidates, target position
    shown: np.ndarray  # (B, shown) item ids in display order
    shown_target: np.ndarray  # (B,) where the real item sits in `shown`
    items: list[np.ndarray]  # per user: held-out rated items, then never-rated ones
    real: list[np.ndarray]  # their real ratings; 0 = never rated

    def __len__(self) -> int:
        return len(self.ranking)

    def subset(self, index: slice | int) -> FidelityCases:
        """The cases of `index` (a slice), or of the first `index` users."""
        index = slice(0, index) if isinstance(index, int) else index
        return FidelityCases(self.ranking.subset(index), self.shown[index], self.shown_target[index],
                             self.items[index], self.real[index])


def fidelity_cases(protocol: Protocol, ratings: pd.DataFrame, shown: int = 5, unrated: int = 3,
                   seed: int = 0) -> FidelityCases:
    """The fixed cases of the protocol's test users; `ratings` holds every rating (`user, item, rating, timestamp`
    in protocol ids, see `protocol_ratings`)."""
    cases, rng = protocol.test, np.random.default_rng([seed, 27])
    by_user = dict(tuple(ratings.groupby("user")))
    shown_items, shown_target, items, real = [], [], [], []
    for user, history, candidates, target_index in zip(cases.users, cases.histories, cases.candidates,
                                                       cases.target_index):
        negatives = np.delete(candidates, target_index)
        order = rng.permutation(shown)
        row = np.append(negatives[: shown - 1], candidates[target_index])[order]
        shown_items.append(row)
        shown_target.append(int(np.flatnonzero(order == shown - 1)[0]))
        held = held_out(by_user.get(int(user)), protocol.valid.targets[protocol.valid.users == user][0], history)
        items.append(np.concatenate([held["item"].to_numpy(), negatives[-unrated:]]).astype(np.int64))
        real.append(np.concatenate([held["rating"].to_numpy(), np.zeros(unrated)]).astype(np.int64))
    return FidelityCases(cases, np.array(shown_items), np.array(shown_target), items, real)


def held_out(frame: pd.DataFrame | None, valid_item: int, history: np.ndarray) -> pd.DataFrame:
    """A user's ratings at or after their validation interaction, one per item, none of them in `history`."""
    if frame is None:
        return pd.DataFrame({"item": [], "rating": []})
    cut = frame.loc[frame["item"] == valid_item, "timestamp"].min()
    later = frame[(frame["timestamp"] >= cut) & ~frame["item"].isin(history)]
    return later.drop_duplicates("item", keep="first")[["item", "rating"]]


def protocol_ratings(protocol: Protocol, path: str | None = None) -> pd.DataFrame:
    """Every rating of the dataset, at any value, on the protocol's users and items, in protocol ids."""
    spec = dataset_spec(protocol.dataset)
    if spec.own_splits:
        raise ValueError(f"{protocol.dataset} holds interaction order only, no ratings or times: fidelity needs both")
    data = spec.parse(spec.files(path))
    users = pd.Index(protocol.users["raw_id"].astype(str)).get_indexer(
        data.users["raw_id"].astype(str).to_numpy()[data.interactions["user_id"]])
    items = pd.Index(protocol.items["raw_id"].astype(str)).get_indexer(
        data.items["raw_id"].astype(str).to_numpy()[data.interactions["item_id"]])
    frame = pd.DataFrame({"user": users, "item": items, "rating": data.interactions["rating"].to_numpy(),
                          "timestamp": data.interactions["timestamp"].to_numpy()})
    return frame[(frame["user"] >= 0) & (frame["item"] >= 0)].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- users
@dataclass
class Answers:
    """A simulated user's answers: utilities of the 20 candidates and of the shown items (the pick is the best
    shown one), and its 1-5 rating of each item to rate (None: a user that only chooses)."""

    ranking: np.ndarray
    shown: np.ndarray
    ratings: list[np.ndarray] | None


def score_user(score: Callable[[Cases], np.ndarray], cases: FidelityCases, histogram: np.ndarray) -> Answers:
    """A user whose utility is a policy's score: picks and orders by it, rates by quantile (an item's percentile
    among the user's items, mapped onto the rating `histogram`)."""
    ranking = score(cases.ranking)
    shown = score(_with_candidates(cases.ranking, cases.shown))
    width = max(map(len, cases.items))
    padded = np.array([np.resize(items, width) for items in cases.items])
    rated = score(_with_candidates(cases.ranking, padded))
    ratings = [quantile_ratings(row[: len(items)], histogram) for row, items in zip(rated, cases.items)]
    return Answers(ranking, shown, ratings)


def quantile_ratings(scores: np.ndarray, histogram: np.ndarray) -> np.ndarray:
    """Ratings whose shares follow `histogram`, in the order of `scores` (higher score, higher rating)."""
    percentile = (pd.Series(scores).rank(method="average").to_numpy() - 0.5) / len(scores)
    return 1 + np.searchsorted(np.cumsum(histogram)[:-1], percentile, side="right")


def _with_candidates(cases: Cases, candidates: np.ndarray) -> Cases:
    return Cases(cases.users, cases.histories, np.asarray(candidates), np.zeros(len(cases), dtype=np.int64))


def joined(parts: Sequence[Answers]) -> Answers:
    return Answers(np.concatenate([a.ranking for a in parts]), np.concatenate([a.shown for a in parts]),
                   [r for a in parts for r in a.ratings])


def write_answers(path: Path, answers: Answers, cases: FidelityCases, **extra) -> None:
    """An LLM row's answers for the first users of `cases`, as JSON (no pickle)."""
    users = cases.ranking.users[: len(answers.ranking)].tolist()
    write_json(path, {"users": users, "ranking": answers.ranking.tolist(), "shown": answers.shown.tolist(),
                      "ratings": [r.tolist() for r in answers.ratings], **extra})


def read_answers(path: Path, cases: FidelityCases) -> Answers:
    saved = read_json(path, "saved fidelity answers")
    if saved["users"] != cases.ranking.users[: len(saved["users"])].tolist():
        raise ValueError(f"{path} holds answers of other users than this run's cases; delete it to answer anew")
    return Answers(np.asarray(saved["ranking"], dtype=float), np.asarray(saved["shown"], dtype=float),
                   [np.asarray(r) for r in saved["ratings"]])


def population_file(folder: Path) -> Path:
    return folder / "population.json"


class LLMUser:
    """The environment's simulated user (`agents.society.Population`), asked the fidelity questions; with
    `slow_thinking`, after one round of the feedback loop on its validation case."""

    def __init__(self, population: Population, protocol: Protocol, slow_thinking: bool = False, chunk: int = 16):
        self.population, self.protocol, self.slow_thinking, self.chunk = population, protocol, slow_thinking, chunk

    def answer(self, cases: FidelityCases, desc: str = "llm", checkpoint: Path | None = None) -> Answers:
        """Every user's answers, `chunk` users at a time; with `checkpoint`, saved after each chunk (with the
        population's summaries beside it) and continued from there."""
        answers = [read_answers(checkpoint, cases)] if checkpoint and checkpoint.is_file() else []
        done = len(answers[0].ranking) if answers else 0
        starts = range(done, len(cases), self.chunk)
        for start in tqdm(starts, desc=desc, unit=f"×{self.chunk} users", initial=done // self.chunk,
                          total=done // self.chunk + len(starts)):
            answers.append(self._answer(cases.subset(slice(start, start + self.chunk))))
            if checkpoint:
                self.population.save(population_file(checkpoint.parent))
                write_answers(checkpoint, joined(answers), cases)
        return joined(answers)

    def memories(self, cases: FidelityCases):
        """Each user's memory at the test case: its first summary, or (slow thinking) the summary it rewrote after
        reflecting on its validation round."""
        users = cases.ranking.users
        if not self.slow_thinking:
            return self.population.start(users, cases.ranking.histories)
        valid = self.protocol.valid
        rows = [int(np.flatnonzero(valid.users == u)[0]) for u in users]
        memories = self.population.start(users, [valid.histories[r] for r in rows])
        shown = self.population.config.shown
        negatives = [np.delete(valid.candidates[r], valid.target_index[r])[: shown - 1].tolist() for r in rows]
        self.population.respond([FeedbackRequest(int(u), [int(valid.targets[r]), *others], int(valid.targets[r]),
                                                 int(u)) for u, r, others in zip(users, rows, negatives)])
        return memories  # each remembered its validation item: its history is now the test history

    def _answer(self, cases: FidelityCases) -> Answers:
        catalogue, llm = self.protocol, self.population.llm
        memories = self.memories(cases)
        recent = self.population.loop.recent

        def chats(memory, lists):
            return [prompts.choice_chat(recent(memory.history), catalogue.titles(items), memory.profile,
                                        memory.summary) for items in lists]

        ranking, shown, ratings = [], [], []
        for b, memory in enumerate(memories):  # one user at a time: its questions share its cached description
            asked = [prompts.next_choice_chat(recent(memory.history), memory.profile, memory.summary),
                     *chats(memory, [cases.shown[b]])]
            scores = fast.choice_scores(llm, asked, [catalogue.titles(items) for items in
                                                     (cases.ranking.candidates[b], cases.shown[b])])
            ranking.append(scores[0])
            shown.append(scores[1])
            chosen = [[*chat, {"role": "assistant", "content": f"I choose [1] {catalogue.item_text(item)}."}]
                      for chat, item in zip(chats(memory, [[i] for i in cases.items[b]]), cases.items[b])]
            ratings.append(np.asarray(fast.rate(llm, chosen)))
        return Answers(np.asarray(ranking), np.asarray(shown), ratings)


# ------------------------------------------------------------------------------------------------- measures
def measure(cases: FidelityCases, answers: Answers, resamples: int = 200, seed: int = 0) -> dict:
    """Every fidelity measure of one row, each with its bootstrap standard error (`<name>_se`)."""
    ranks = target_ranks(answers.ranking, cases.ranking.target_index)
    picked = (answers.shown.argmax(1) == cases.shown_target).astype(float)
    per_user = {"pick": picked, "pick_unlisted": unlisted_picks(cases, answers),
                **{f"ndcg@{k}": ndcg(ranks, k) for k in KS}}
    out = {}
    for name, values in per_user.items():
        out[name] = float(values.mean())
        out[f"{name}_se"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    if answers.ratings is not None:
        statistics = rating_statistics(cases, answers.ratings)
        for name, statistic in statistics.items():
            out[name] = statistic(np.arange(len(cases)))
            out[f"{name}_se"] = bootstrap_se(statistic, len(cases), resamples, seed)
        out.update(counts(cases))
    return out


def unlisted_picks(cases: FidelityCases, answers: Answers) -> np.ndarray:
    """Whether the shown item the user's ordering utility ranks first is the real one: the pick of a user asked
    what it chooses next, without the list in its prompt (the shown items are among the 20 candidates)."""
    columns = np.array([[list(row).index(item) for item in shown]
                        for row, shown in zip(cases.ranking.candidates, cases.shown)])
    utility = np.take_along_axis(answers.ranking, columns, 1)
    return (utility.argmax(1) == cases.shown_target).astype(float)


def rating_statistics(cases: FidelityCases, predicted: Sequence[np.ndarray]) -> dict[str, Callable]:
    """Each like/dislike and rating measure as a function of a sample of users (for the bootstrap)."""

    def pooled(users):
        real = np.concatenate([cases.real[u] for u in users])
        said = np.concatenate([predicted[u] for u in users])
        return real, said

    def agreement(negatives: str, ratio: int, metric: str):
        def statistic(users):
            real, said = pooled(users)
            liked = said >= LIKED_FROM
            positive = real >= LIKED_FROM
            negative = (real == 0) if negatives == "unrated" else (real >= 1) & (real <= DISLIKED_TO)
            if not positive.any() or not negative.any():
                return float("nan")
            return agreement_at_ratio(liked[positive].mean(), liked[negative].mean(), ratio)[metric]
        return statistic

    def rating(metric: str):
        def statistic(users):
            real, said = pooled(users)
            known = real > 0
            if metric == "js":
                return js_divergence(rating_histogram(said[known]), rating_histogram(real[known]))
            return rating_errors(said[known], real[known])[metric] if known.sum() > 1 else float("nan")
        return statistic

    statistics = {f"{metric}_{negatives}_1:{ratio}": agreement(negatives, ratio, metric)
                  for negatives in ("unrated", "disliked") for ratio in RATIOS
                  for metric in ("accuracy", "precision", "recall", "f1")}
    statistics.update({metric: rating(metric) for metric in ("mae", "rmse", "spearman", "js")})
    return statistics


def counts(cases: FidelityCases) -> dict[str, int]:
    real = np.concatenate(cases.real)
    return {"users": len(cases), "liked": int((real >= LIKED_FROM).sum()),
            "disliked": int(((real >= 1) & (real <= DISLIKED_TO)).sum()), "unrated": int((real == 0).sum()),
            "rated": int((real > 0).sum())}


def chance(cases: FidelityCases, histogram: np.ndarray, shown: int) -> dict:
    """What a user answering at random scores in expectation: picks uniformly, orders uniformly, says liked with
    probability 1/2, rates from the real histogram."""
    width = cases.ranking.candidates.shape[1]
    out = {"pick": 1 / shown, "pick_unlisted": 1 / shown,
           **{f"ndcg@{k}": float(ndcg(np.arange(1, width + 1), k).mean()) for k in KS}}
    for ratio in RATIOS:
        for metric, value in agreement_at_ratio(0.5, 0.5, ratio).items():
            out[f"{metric}_unrated_1:{ratio}"] = out[f"{metric}_disliked_1:{ratio}"] = value
    real = np.concatenate(cases.real)
    real = real[real > 0]
    scale = np.array(RATING_SCALE)
    out["mae"] = float(np.mean([histogram @ np.abs(scale - r) for r in real]))
    out["rmse"] = float(np.sqrt(np.mean([histogram @ (scale - r) ** 2 for r in real])))
    return out


# ------------------------------------------------------------------------------------------------- the run
def run_fidelity(config: FidelityConfig, resume: Path | None = None) -> tuple[list[dict], Path]:
    """Measure every row and write the results folder, or continue `resume`, a folder of a run with the same
    settings (rows without an LLM are recomputed: they take seconds); returns (rows, folder)."""
    from starec_env.benchmarks.report import new_results_dir

    protocol = build_protocol(config.dataset, default_config(config.dataset, seed=config.seed), config.data_path)
    ratings = protocol_ratings(protocol, config.data_path)
    cases = fidelity_cases(protocol, ratings, config.shown, config.unrated, config.seed)
    train = protocol.train("full")
    histogram = training_histogram(ratings, protocol)
    if resume is not None:
        check_resumable(resume, config)
    out = resume or new_results_dir(config.out, f"fidelity-{protocol.dataset}")
    if resume is None:  # the record first: a run killed before its first row is still one to resume
        write_json(out / "run.json", run_record(config, [protocol.record()], []), indent=1, default=str)
    cheap, few = cases.subset(config.cheap_users), cases.subset(config.n_users)
    rows: list[dict] = [{"row": "chance", "users": len(few), **chance(few, histogram, config.shown)}]
    prior = make_policy(config.prior, seed=config.seed).fit(train)
    scorers = {"random": RandomPolicy(config.seed).score, "pop": PopularityPolicy().fit(train).score,
               "collaborative": prior.score}
    answers: dict[str, Answers] = {}
    population = None
    for name in config.rows:
        started = time.perf_counter()
        if name in scorers:
            answers[name] = score_user(scorers[name], cheap, histogram)
            for subset, users in ((few, len(few)), (cheap, len(cheap))):
                sliced = _answers_slice(answers[name], users)
                rows.append({"row": name, **measure(subset, sliced, config.resamples, config.seed),
                             "seconds": round(time.perf_counter() - started, 2)})
        else:
            population = population or _population(protocol, config, out)
            answers[name], cost = _llm_row(name, population, protocol, few, out, config.chunk)
            rows.append({"row": name, **measure(few, answers[name], config.resamples, config.seed), **cost,
                         "dtype": population.llm.dtype})
        write_fidelity(rows, config, protocol, out, answers, few, histogram)
    if config.fit:
        population = population or _population(protocol, config, out)
        model = fit_grounded(population, protocol, prior, few)
        llm = answers.get("llm") or _llm_row("llm", population, protocol, few, out, config.chunk)[0]
        prior_answers = score_user(prior.score, few, histogram)
        grounded = Answers(model.utility(llm.ranking, prior_answers.ranking),
                           model.utility(llm.shown, prior_answers.shown), None)
        write_json(out / "grounded.json", {**model.to_dict(), "prior": config.prior, "fitted_on": "validation",
                                           "users": len(few)})
        rows.append({"row": "grounded", "users": len(few), **measure(few, grounded, config.resamples, config.seed),
                     **model.to_dict()})
    write_fidelity(rows, config, protocol, out, answers, few, histogram, quiet=False)
    return rows, out


def check_resumable(folder: Path, config: FidelityConfig) -> None:
    """A folder to continue must be a fidelity run made under these settings (all but `out`)."""
    if not (folder / "run.json").is_file():
        raise ValueError(f"{folder}: no run.json, not a fidelity results folder; start without --resume")
    earlier = read_json(folder / "run.json", "run record")["config"]
    now = {key: value for key, value in json.loads(json.dumps(asdict(config), default=str)).items() if key != "out"}
    differ = [f"{key}: {earlier.get(key)!r} there, {value!r} now" for key, value in now.items()
              if earlier.get(key) != value]
    if differ:
        raise ValueError(f"{folder} was measured under other settings ({'; '.join(differ)}); resume with the "
                         "same settings, or start a new results folder")


def _population(protocol: Protocol, config: FidelityConfig, out: Path) -> Population:
    """The simulated users, with the summaries an interrupted run of this folder had written."""
    llm = load_llm(config.model, **({"dtype": config.dtype} if config.dtype else {}))
    population = Population(protocol, llm, AgentConfig())
    saved = population_file(out / "partial")
    return population.load(saved) if saved.is_file() else population


def _llm_row(name: str, population: Population, protocol: Protocol, cases: FidelityCases, out: Path,
             chunk: int) -> tuple[Answers, dict]:
    """(answers, cost) of an LLM row: read from `answers/` when an earlier run finished it, else answered with a
    checkpoint in `partial/` and saved."""
    finished = out / "answers" / f"{name}.json"
    if finished.is_file():
        return read_answers(finished, cases), {k: read_json(finished, "saved fidelity answers")[k]
                                               for k in ("seconds", "tokens_per_user")}
    started, before = time.perf_counter(), sum(population.llm.tokens.values())
    partial = out / "partial" / f"{name}.json"
    user = LLMUser(population, protocol, slow_thinking=name == "llm-slow", chunk=chunk)
    answers = user.answer(cases, name, partial)
    cost = {"seconds": round(time.perf_counter() - started, 2),
            "tokens_per_user": (sum(population.llm.tokens.values()) - before) / len(cases)}
    write_answers(finished, answers, cases, **cost)
    partial.unlink(missing_ok=True)
    return answers, cost


def fit_grounded(population: Population, protocol: Protocol, prior, cases: FidelityCases) -> GroundedChoice:
    """The grounded user's weights, from the same users' validation cases only: the LLM's and the prior's scores
    of the validation candidates, and the item each user really chose there."""
    users = cases.ranking.users
    valid = protocol.valid.subset(np.flatnonzero(np.isin(protocol.valid.users, users)))
    memories = population.start(valid.users, valid.histories)
    recent = population.loop.recent
    chats = [prompts.next_choice_chat(recent(m.history), m.profile, m.summary) for m in memories]
    llm_scores = fast.choice_scores(population.llm, chats, [protocol.titles(c) for c in valid.candidates])
    return GroundedChoice.fit(np.asarray(llm_scores), prior.score(valid), valid.target_index)


def training_histogram(ratings: pd.DataFrame, protocol: Protocol) -> np.ndarray:
    """The rating histogram of what the simulated users may know: every rating before each user's validation
    interaction."""
    valid_item = dict(zip(protocol.valid.users.tolist(), protocol.valid.targets.tolist()))
    first = ratings.assign(valid=ratings["user"].map(valid_item))
    cut = first[first["item"] == first["valid"]].groupby("user")["timestamp"].min()
    before = ratings["timestamp"] < ratings["user"].map(cut).fillna(np.inf)
    return rating_histogram(ratings.loc[before, "rating"].to_numpy())


def _answers_slice(answers: Answers, count: int) -> Answers:
    return Answers(answers.ranking[:count], answers.shown[:count],
                   None if answers.ratings is None else answers.ratings[:count])


# ------------------------------------------------------------------------------------------------- output
def write_fidelity(rows, config, protocol, out: Path, answers, cases, histogram, quiet: bool = True) -> None:
    frame = pd.DataFrame(rows)
    write_json(out / "run.json", run_record(config, [protocol.record()], [
        {"row": r["row"], "seconds": r.get("seconds")} for r in rows]), indent=1, default=str)
    with atomic_path(out / "results.csv") as scratch:
        frame.to_csv(scratch, index=False)
    write_json(out / "results.json", {"rows": rows, "protocol": protocol.record(), "counts": counts(cases)}, indent=1,
               default=float)
    table = fidelity_tables(frame, protocol.dataset)
    write_text(out / "table.md", table + "\n")
    plot_ratings(answers, cases, histogram, protocol.dataset, out / "ratings.png")
    if not quiet:
        print(table)
        print(f"\nresults: {out}")


def fidelity_tables(frame: pd.DataFrame, dataset: str) -> str:
    """Choice, like / dislike and rating tables, mean ± standard error, the chance row first."""
    def cell(row, name, scale=1.0):
        value = row.get(name)
        if value is None or pd.isna(value):
            return "—"
        se = row.get(f"{name}_se")
        return f"{value * scale:.3f}" if se is None or pd.isna(se) else f"{value * scale:.3f} ± {se * scale:.3f}"

    records = frame.to_dict("records")
    sections = [
        ("Choice", ["pick", "pick_unlisted", *(f"ndcg@{k}" for k in KS)],
         ["pick accuracy", "pick, no list", *(f"NDCG@{k}" for k in KS)]),
        ("Like / dislike (accuracy, F1)",
         [f"{m}_{n}_1:{r}" for n in ("unrated", "disliked") for r in RATIOS for m in ("accuracy", "f1")],
         [f"{m} {'unrated' if n == 'unrated' else 'real dislikes'} 1:{r}" for n in ("unrated", "disliked")
          for r in RATIOS for m in ("acc", "F1")]),
        ("Rating", ["mae", "rmse", "spearman", "js"], ["MAE", "RMSE", "Spearman ρ", "JS divergence"]),
    ]
    lines = [f"# Simulated-user fidelity on {dataset} (held out by time)"]
    for title, names, headers in sections:
        lines += ["", f"## {title}", "", "| user | users | " + " | ".join(headers) + " |",
                  "|---|---|" + "---|" * len(headers)]
        for row in records:
            if title != "Choice" and all(pd.isna(row.get(n)) for n in names):
                continue
            lines.append(f"| {row['row']} | {int(row['users'])} | " + " | ".join(cell(row, n) for n in names) + " |")
    return "\n".join(lines)


def plot_ratings(answers: dict, cases: FidelityCases, histogram: np.ndarray, dataset: str, path: Path) -> None:
    """Real and simulated rating histograms of the held-out rated items, side by side."""
    from starec_env.benchmarks.report import plt

    real = np.concatenate(cases.real)
    known = real > 0
    bars = {"real": rating_histogram(real[known])}
    for name, answer in answers.items():
        if answer.ratings is not None:
            said = np.concatenate(answer.ratings[: len(cases)])
            bars[name] = rating_histogram(said[known[: len(said)]])
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(bars)
    for i, (name, shares) in enumerate(bars.items()):
        axis.bar(np.array(RATING_SCALE) + (i - len(bars) / 2 + 0.5) * width, shares, width, label=name)
    axis.set(xlabel="rating", ylabel="share of held-out rated items", xticks=RATING_SCALE,
             title=f"{dataset}: real and simulated ratings")
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as scratch:
        figure.savefig(scratch, dpi=120)
    plt.close(figure)

