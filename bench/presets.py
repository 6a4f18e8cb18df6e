"""Sampling presets for the demo lineup, measured on the app's example prompts.

  python bench/presets.py [--seeds 3] [--first-seed 0] [--confirm-seeds 5] [--first-confirm-seed 200]
                          [--only NAME,...] [--streams 2] [--cores N] [--quiet]

Each candidate answers every example prompt (`EXAMPLES` in playground/ui_page.py) with seeds 0, 1, 2, ...
through `models.local.stream_tokens` (the single-stream decode loop the app's engines are tested
against: the same per-stream sampler, the model's chat template, bfloat16 on the CPU). Two answers
decode at a time, each on its share of the cores. A greedy candidate is deterministic and answers each
prompt once. Every answer is a function of (candidate, prompt, seed): a rerun gives the same table
except for the speeds. Printed per candidate:

  stop        answers that ended on the end-of-turn token (finish reason "stop", not "length")
  english     answers judged English by `is_english` (below); en:oth is the mean count per answer of
              English vs other-language stopwords, nonascii the mean share of letters outside ASCII
  tokens      mean completion tokens; tok/s the mean decode speed of one stream after its first token
  distinct-2  unique / total word bigrams inside an answer (lower: the answer repeats itself)
  variety     1 - mean Jaccard overlap of the word bigrams of two answers to the same prompt with
              different seeds (0 for greedy; higher: answers differ more from one run to the next)

A candidate is dropped once two of its answers have run to max_new_tokens (it cannot end reliably); its
numbers then cover the answers it gave (`answers` shows how many of those planned). The chosen three
(CHOSEN; the script checks that they match PRESETS in models/lineups/registry.py) then answer again on fresh
seeds 200, 201, ...; a greedy one keeps its grid answers, which no seed changes.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models.lineups import PRESETS, get_lineup  # noqa: E402
from models.loading import LoadedWeights, LoadOptions, load_lineup  # noqa: E402
from models.local import GenerationResult, stream_tokens  # noqa: E402
from models.prompt_format import render_prompt  # noqa: E402
from models.specs import ContenderSpec, GenerationParams  # noqa: E402

G = GenerationParams


@dataclass(frozen=True)
class Candidate:
    params: GenerationParams
    system_prompt: str | None = None  # None: the chat template's default system prompt


def greedy(rep: float) -> Candidate:
    return Candidate(G(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=rep))


def sampled(
    temperature: float, top_p: float, rep: float, top_k: int = 50, system: str | None = None, max_new_tokens: int = 256
) -> Candidate:
    return Candidate(
        G(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=rep, max_new_tokens=max_new_tokens),
        system,
    )


ENGLISH_ONLY = "You are a helpful assistant. Always answer in English."
VIVID = "You are a creative assistant. Answer in English, briefly, with vivid and original wording."
# max_new_tokens is the app's default 256 unless the name says otherwise: a lower cap would only turn
# long answers into "length" ones. GRID runs by default; the others with --only.
CANDIDATES: dict[str, Candidate] = {
    "greedy": greedy(1.0),
    "greedy rp1.1": greedy(1.1),
    "greedy rp1.2": greedy(1.2),
    "t0.3 p0.9 rp1.1": sampled(0.3, 0.9, 1.1),
    "t0.4 p0.9 rp1.1": sampled(0.4, 0.9, 1.1),
    "t0.5 p0.9 rp1.0": sampled(0.5, 0.9, 1.0),
    "t0.5 p0.9 rp1.1": sampled(0.5, 0.9, 1.1),
    "t0.5 p0.9 rp1.2": sampled(0.5, 0.9, 1.2),
    "t0.6 p0.95 rp1.1": sampled(0.6, 0.95, 1.1),
    "t0.6 p0.95 rp1.1 max384": sampled(0.6, 0.95, 1.1, max_new_tokens=384),
    "t0.7 p0.8 k40 rp1.1": sampled(0.7, 0.8, 1.1, top_k=40),
    "t0.7 p0.9 rp1.05": sampled(0.7, 0.9, 1.05),
    "t0.7 p0.95 rp1.05": sampled(0.7, 0.95, 1.05),
    "t0.7 p0.9 rp1.1": sampled(0.7, 0.9, 1.1),
    "t0.7 p0.9 rp1.1 max384": sampled(0.7, 0.9, 1.1, max_new_tokens=384),
    "t0.7 p0.9 rp1.2": sampled(0.7, 0.9, 1.2),
    "t0.8 p0.9 rp1.05": sampled(0.8, 0.9, 1.05),
    "t0.8 p0.9 rp1.1": sampled(0.8, 0.9, 1.1),
    "t0.8 p0.9 k30 rp1.1": sampled(0.8, 0.9, 1.1, top_k=30),
    "t0.8 p0.95 rp1.3": sampled(0.8, 0.95, 1.3),
    "t1.0 p0.95 rp1.1": sampled(1.0, 0.95, 1.1),
    "t0.7 p0.9 rp1.1 +english": sampled(0.7, 0.9, 1.1, system=ENGLISH_ONLY),
    "t0.8 p0.9 rp1.1 +english": sampled(0.8, 0.9, 1.1, system=ENGLISH_ONLY),
    "t0.7 p0.9 rp1.1 +vivid": sampled(0.7, 0.9, 1.1, system=VIVID),
}
GRID = [
    "greedy",
    "greedy rp1.1",
    "greedy rp1.2",
    "t0.3 p0.9 rp1.1",
    "t0.5 p0.9 rp1.0",
    "t0.5 p0.9 rp1.1",
    "t0.7 p0.9 rp1.1",
    "t0.7 p0.9 rp1.1 max384",
    "t0.8 p0.9 rp1.05",
    "t1.0 p0.95 rp1.1",
]
CHOSEN = {"precise": "greedy rp1.1", "balanced": "t0.3 p0.9 rp1.1", "creative": "t0.7 p0.9 rp1.1 max384"}
REJECT_AFTER_LENGTH = 2

# Common English stopwords, and French / Spanish / German / Italian / Portuguese ones that are not
# English words.
ENGLISH = set(
    "the and is are was were of to in that it this with for from by be been your you they their "
    "them which what when why how can will would should could have has had not but or its into "
    "than then these those there here our we my about more most also each other such".split()
)
OTHER = set(
    "le la les des est et une du pour que qui dans sur pas avec ce cette au aux sont il elle nous "
    "vous mais leur très être ou où comme sa ses lui été peut fait aussi de "  # French
    "el los las por una es y con para del al lo más pero sus muy está "  # Spanish
    "der das und ist nicht ich mit ein eine zu den dem auf für sich auch wird "  # German
    "della di che è sono gli nel "  # Italian
    "não uma os em pela pelo são".split()
)  # Portuguese
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
SENTENCE = re.compile(r"[^.!?\n]+")


def language_counts(text: str) -> tuple[int, int, float]:
    """English stopwords, other-language stopwords, and the share of letters outside ASCII."""
    words = [w.lower() for w in WORD.findall(text)]
    letters = [c for c in text if c.isalpha()]
    non_ascii = sum(1 for c in letters if ord(c) > 127) / len(letters) if letters else 0.0
    return sum(w in ENGLISH for w in words), sum(w in OTHER for w in words), non_ascii


def is_english(text: str) -> bool:
    """English: at most 2% of the letters outside ASCII; English stopwords at least 5% of the words
    once an answer has 20 words (a haiku may have none); and no sentence (split at . ! ? and line
    ends) with two or more other-language stopwords making a third or more of its stopwords."""
    english, _, non_ascii = language_counts(text)
    words = len(WORD.findall(text))
    if non_ascii > 0.02 or (words >= 20 and english < 0.05 * words):
        return False
    for sentence in SENTENCE.findall(text):
        english, other, _ = language_counts(sentence)
        if other >= 2 and 2 * other >= english:
            return False
    return True


def bigrams(text: str) -> list[tuple[str, str]]:
    words = [w.lower() for w in WORD.findall(text)]
    return list(zip(words, words[1:]))


def distinct2(text: str) -> float:
    pairs = bigrams(text)
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def variety(texts: list[str]) -> float:
    """1 - mean pairwise Jaccard overlap of the answers' bigram sets."""
    sets = [set(bigrams(t)) for t in texts]
    overlaps = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
    return 1.0 - statistics.mean(overlaps) if overlaps else 0.0


@dataclass
class Answer:
    prompt: str
    seed: int
    result: GenerationResult


@dataclass
class Row:
    name: str
    params: GenerationParams
    answers: list[Answer]
    planned: int
    seconds: float

    def line(self) -> str:
        results = [a.result for a in self.answers]
        n = len(results)
        stops = sum(r.finish_reason == "stop" for r in results)
        english = sum(is_english(r.text) for r in results)
        counts = [language_counts(r.text) for r in results]
        speeds = [r.tokens_per_s for r in results if r.tokens_per_s]
        by_prompt: dict[str, list[str]] = {}
        for a in self.answers:
            by_prompt.setdefault(a.prompt, []).append(a.result.text)
        varieties = [variety(texts) for texts in by_prompt.values() if len(texts) > 1]
        done = f"{n}/{self.planned}" + (" dropped" if n < self.planned else "")
        return (
            f"| {self.name} | {_params(self.params)} | {stops}/{n} | {english}/{n} "
            f"| {statistics.mean(c[0] for c in counts):.1f}:{statistics.mean(c[1] for c in counts):.1f} "
            f"| {statistics.mean(c[2] for c in counts):.3f} "
            f"| {statistics.mean(r.completion_tokens for r in results):.0f} "
            f"| {statistics.mean(speeds) if speeds else 0:.1f} "
            f"| {statistics.mean(distinct2(r.text) for r in results):.2f} "
            f"| {statistics.mean(varieties) if varieties else 0:.2f} | {done} | {self.seconds:.0f} |"
        )


HEADER = (
    "| preset | T / top_p / top_k / rep / max | stop | english | en:oth | nonascii | tokens | tok/s "
    "| distinct-2 | variety | answers | s |\n|" + " --- |" * 12
)


def _params(p: GenerationParams) -> str:
    return f"{p.temperature:g} / {p.top_p:g} / {p.top_k} / {p.repetition_penalty:g} / {p.max_new_tokens}"


def answer_once(
    loaded: LoadedWeights,
    contender: ContenderSpec,
    messages: list[dict[str, str]],
    params: GenerationParams,
    seed: int,
    threads: int,
) -> GenerationResult:
    """One answer, decoded in this thread on `threads` CPU threads (torch's count is per thread)."""
    torch.set_num_threads(threads)
    prompt = render_prompt(contender.prompt_format, messages, loaded.tokenizer)
    context = getattr(loaded.model.config, "max_position_embeddings", None) or contender.weights.context_length
    for event in stream_tokens(
        loaded,
        prompt.input_ids,
        params,
        stop=threading.Event(),
        seed=seed,
        context_length=min(context, contender.weights.context_length),
    ):
        if isinstance(event, GenerationResult):
            return event
    raise RuntimeError("the decode loop ended without a result")


def run_preset(
    loaded: LoadedWeights,
    contender: ContenderSpec,
    name: str,
    candidate: Candidate,
    prompts: list[str],
    seeds: list[int],
    streams: int,
    threads: int,
    verbose: bool,
) -> Row:
    """Every prompt for every seed, `streams` answers at a time. Seed-major order, so a candidate dropped
    early has answered every prompt."""
    params = candidate.params
    seeds = seeds[:1] if params.greedy else seeds
    jobs = list(itertools.product(seeds, prompts))
    system = [{"role": "system", "content": candidate.system_prompt}] if candidate.system_prompt else []
    lock, answers, rejected = threading.Lock(), {}, threading.Event()

    def answer(index: int) -> None:
        if rejected.is_set():
            return
        seed, prompt = jobs[index]
        result = answer_once(loaded, contender, [*system, {"role": "user", "content": prompt}], params, seed, threads)
        with lock:
            answers[index] = Answer(prompt, seed, result)
            if sum(a.result.finish_reason == "length" for a in answers.values()) >= REJECT_AFTER_LENGTH:
                rejected.set()
        if verbose:
            print(
                f"    {name} seed {seed} {result.finish_reason} {result.completion_tokens} tok "
                f"{result.tokens_per_s or 0:.1f} tok/s english={is_english(result.text)}: "
                f"{result.text[:100]!r}",
                flush=True,
            )

    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        for future in [pool.submit(answer, index) for index in range(len(jobs))]:
            future.result()
    return Row(name, params, [answers[i] for i in sorted(answers)], len(jobs), time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampled candidate in the grid")
    parser.add_argument("--first-seed", type=int, default=0, help="the grid's first seed")
    parser.add_argument("--confirm-seeds", type=int, default=5, help="fresh seeds for the chosen three; 0: none")
    parser.add_argument("--first-confirm-seed", type=int, default=200, help="the confirmation's first seed")
    parser.add_argument("--only", default="", help="comma-separated candidate names (default: GRID)")
    parser.add_argument("--streams", type=int, default=2, help="answers decoded at once (default: 2)")
    parser.add_argument("--cores", type=int, default=None, help="CPU cores for the decode (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no line per answer")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or GRID
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    # The example prompts, read from the UI module's source (importing it would import gradio).
    tree = ast.parse((Path(__file__).resolve().parents[1] / "playground" / "ui_page.py").read_text())
    prompts = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXAMPLES" for t in node.targets)
    )
    lineup = get_lineup("demo")
    contender = lineup.contenders[0]
    with ThreadPoolExecutor(1) as loader:  # as the app loads: not in the main thread
        loaded = loader.submit(
            load_lineup, lineup, LoadOptions(device_map="cpu", dtype="bfloat16"), lambda m: None
        ).result()
    loaded = loaded[contender.weights]
    cores = args.cores or os.cpu_count() or 1
    threads = max(1, cores // args.streams)
    print(
        f"torch {torch.__version__}, bfloat16, {args.streams} streams at a time on {cores} cores "
        f"({threads} thread(s) each), prompts: {prompts}",
        flush=True,
    )

    def work() -> None:  # in a worker thread, as the app decodes
        started = time.perf_counter()
        rows: dict[str, Row] = {}
        if names:
            print(
                f"\ngrid: seeds {args.first_seed}-{args.first_seed + args.seeds - 1} per sampled candidate "
                "(greedy: one answer per prompt)",
                flush=True,
            )
            for name in names:
                seeds = list(range(args.first_seed, args.first_seed + args.seeds))
                rows[name] = run_preset(
                    loaded, contender, name, CANDIDATES[name], prompts, seeds, args.streams, threads, not args.quiet
                )
                print(HEADER.splitlines()[0] + "\n" + rows[name].line(), flush=True)
            print(f"\ngrid ({time.perf_counter() - started:.0f} s)\n{HEADER}")
            print("\n".join(row.line() for row in rows.values()), flush=True)
        confirm = list(range(args.first_confirm_seed, args.first_confirm_seed + args.confirm_seeds))
        if not confirm:
            return
        print(f"\nconfirmation: the chosen three on fresh seeds {confirm[0]}-{confirm[-1]}", flush=True)
        chosen = []
        for preset, name in CHOSEN.items():
            candidate = CANDIDATES[name]
            if candidate.params.greedy and name in rows:  # greedy: the same answers whatever the seed
                row = rows[name]
            else:
                row = run_preset(
                    loaded, contender, name, candidate, prompts, confirm, args.streams, threads, not args.quiet
                )
            chosen.append(Row(f"{preset} = {name}", row.params, row.answers, row.planned, row.seconds))
        print(f"\nchosen ({time.perf_counter() - started:.0f} s in all)\n{HEADER}")
        print("\n".join(row.line() for row in chosen))
        for preset, name in CHOSEN.items():
            wanted = CANDIDATES[name]
            same = (PRESETS[preset], get_system(preset)) == (wanted.params, wanted.system_prompt)
            print(f"PRESETS[{preset!r}] {'matches' if same else 'DIFFERS from'} {name}")

    with ThreadPoolExecutor(1) as worker:
        worker.submit(work).result()


def get_system(preset: str) -> str | None:
    """The system prompt the demo lineup's contender for `preset` carries."""
    return next(c.system_prompt for c in get_lineup("demo").contenders if c.name.endswith(f"({preset})"))


if __name__ == "__main__":
    main()
