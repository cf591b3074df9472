"""The one batch-inference loop: decode in threads ahead of the forward pass, stack, forward, positive probability.

Every caller that runs a model over image files goes through `batches`: predict.predict_paths, novelty's
backbone features, the explanation pages (explain.saliency.examine, which runs its own gradient pass on the
batches the loop decoded) and screening. What it gives per file is a `Row`: the position in the path list,
what `prepare` made of the file, or the reason it could not be read (a failed image is a row, never an
exception), and, when the loop ran the forward pass, the positive-class probability and novelty score.

The softmax is taken here once: `positive_probabilities`, the probability of the positive class
(wildvision.classes.POSITIVE), for every caller.

Speed (experiments/bench_batch_predict.py, docs/performance.md): on 2 cores the forward pass is the work and
everything else must stay out of its way. One loader thread decodes the next PREFETCH_BATCHES batches while
the model runs; the novelty score is computed with torch on the pooled head input from the same pass (numpy's
OpenBLAS threads would spin against torch's for the same two cores).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import torch

from wildvision import novelty
from wildvision.classes import POSITIVE
from wildvision.data import eval_pixels, normalise_batch
from wildvision.images import ImageError, open_image
from wildvision.models import head

if TYPE_CHECKING:
    from wildvision.predict import LoadedModel

MAX_LOADER_THREADS = 8
PREFETCH_BATCHES = 2  # batches decoded ahead of the forward pass: bounds memory on long path lists
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 32

Prepared = TypeVar("Prepared")


def positive_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The positive class's softmax probability of each row of `logits` (float32, on the logits' device)."""
    return torch.softmax(logits.float(), dim=1)[:, POSITIVE]


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: 32 on a GPU, 8 on the CPU.

    On the CPU bigger batches are slower, not faster: once an activation tensor passes glibc's 32 MB
    mmap ceiling (EfficientNet-Lite0 between 8 and 12 images), every pass maps fresh memory and
    page-faults it in. On 2 cores the default model ran about 100 images/s at batch 8, 60 at 12 and 32 at 32.
    """
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def loader_threads() -> int:
    """Threads that decode images while the model runs: one core is left to the forward pass.

    Threads, not worker processes: Pillow and torch release the GIL while they decode, resize and
    normalise, and threads start at once and are safe inside Streamlit's script thread, where forking
    a multi-threaded server is not. On a 2-core machine that is one thread, on one core still one (it
    overlaps file reads with the forward pass); more than 8 never paid off.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_LOADER_THREADS, cores - 1))


def _attempt(prepare: Callable[[str | Path], Prepared], path: str | Path) -> Prepared | ImageError:
    try:
        return prepare(path)
    except ImageError as error:
        return error


def decoded_batches(
    paths: Sequence[str | Path], prepare: Callable[[str | Path], Prepared], batch_size: int, workers: int | None = None
) -> Iterator[list[tuple[int, Prepared | ImageError]]]:
    """`paths` in batches of `batch_size`, each as (index, prepare(path), or the ImageError that stopped it).

    `workers` threads (default `loader_threads()`) run `prepare` on the next PREFETCH_BATCHES batches while
    the caller works on this one, so decoding costs little time on top of the forward pass and memory stays
    bounded on long path lists. Closing the iterator early stops them.
    """
    ranges = [range(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=workers or loader_threads(), thread_name_prefix="wildvision-load") as pool:
        pending = deque([pool.submit(_attempt, prepare, paths[i]) for i in batch] for batch in ranges[:PREFETCH_BATCHES])
        for number, batch in enumerate(ranges):
            futures = pending.popleft()
            if number + PREFETCH_BATCHES < len(ranges):
                pending.append([pool.submit(_attempt, prepare, paths[i]) for i in ranges[number + PREFETCH_BATCHES]])
            yield [(index, future.result()) for index, future in zip(batch, futures)]


@dataclass
class Row(Generic[Prepared]):
    """One file of a batch. `prepared` is what `prepare` made of it (None when it raised ImageError, whose reason is
    `error`); probability and unlike_training are filled when the loop ran the forward pass and the file had an input."""

    position: int  # in the path list
    prepared: Prepared | None
    error: str | None = None
    probability: float | None = None  # of the positive class
    unlike_training: float | None = None  # novelty.score; None without a summary of the model's training photos


@dataclass
class Batch(Generic[Prepared]):
    """The rows of one batch in path order; `readable` are those with an input, stacked in that order as `inputs`
    (None when none could be read); `features` the pooled head input of each readable row, when asked for."""

    rows: list[Row[Prepared]]
    readable: list[Row[Prepared]]
    inputs: torch.Tensor | None
    features: torch.Tensor | None = None


def image_input(loaded: LoadedModel) -> Callable[[str | Path], torch.Tensor]:
    """What a loader thread makes of an image file: the resized photo as uint8 (data.eval_pixels; raises ImageError).
    `stack_inputs` turns a batch of them into the model's input."""
    pixels = eval_pixels()
    return lambda path: pixels(open_image(path))


def stack_inputs(loaded: LoadedModel, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
    """eval_pixels photos as one input batch on the model's device: moved as uint8 (a quarter of the bytes), then
    converted and normalised at once (data.normalise_batch), channels_last as the model is."""
    batch = torch.stack(list(pixels)).to(loaded.device)
    return normalise_batch(batch, loaded.normalisation).contiguous(memory_format=torch.channels_last)


def pooled(outputs: torch.Tensor) -> torch.Tensor:
    """One vector per image: a feature map (SqueezeNet's head reads 512 x 13 x 13) is averaged over its positions."""
    return outputs.float().mean(dim=(2, 3)) if outputs.ndim == 4 else outputs.float().flatten(1)


@contextmanager
def head_inputs(loaded: LoadedModel) -> Iterator[list[torch.Tensor]]:
    """A list that collects the pooled input of the model's head, one [batch, dim] tensor per forward pass in the block.

    The head's input is the backbone output of models.split_at_head (in eval mode), read by a hook so that
    one forward pass gives both the logits and the features and no second copy of the network is made.
    Hold `loaded.lock` around the block, as for any forward pass: the hook would see other threads' passes.
    """
    captured: list[torch.Tensor] = []
    handle = head(loaded.model, loaded.arch).register_forward_pre_hook(lambda module, inputs: captured.append(pooled(inputs[0].detach())))
    try:
        yield captured
    finally:
        handle.remove()


def maybe_head_inputs(loaded: LoadedModel, wanted: bool = True) -> AbstractContextManager[list[torch.Tensor]]:
    """head_inputs when `wanted` and the model keeps a summary of its training photos, else an empty list."""
    return head_inputs(loaded) if wanted and loaded.novelty is not None else nullcontext([])


def novelty_scores(loaded: LoadedModel, captured: list[torch.Tensor], count: int) -> list[float | None]:
    """The novelty score of each of the `count` images of the pass whose head inputs `captured` holds (maybe_head_inputs);
    None each without a summary of the model's training photos."""
    if loaded.novelty is None or not captured:
        return [None] * count
    return novelty.score_tensor(loaded.novelty, captured[0]).tolist()


def forward(loaded: LoadedModel, inputs: torch.Tensor, features: bool = False) -> tuple[list[float], list[float | None], torch.Tensor | None]:
    """One forward pass under the model's lock: each image's positive probability, its novelty score (None
    without a summary of the model's training photos) and, when asked, the pooled head inputs."""
    with torch.inference_mode():
        with loaded.lock, head_inputs(loaded) if features else maybe_head_inputs(loaded) as captured:
            logits = loaded.model(inputs)
        probabilities = positive_probabilities(logits).cpu().tolist()
        unlike = novelty_scores(loaded, captured, len(probabilities))
    return probabilities, unlike, captured[0] if features else None


def batches(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    prepare: Callable[[str | Path], Prepared] | None = None,
    *,
    tensor: Callable[[Prepared], torch.Tensor | None] | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    run_forward: bool = True,
    features: bool = False,
) -> Iterator[Batch[Prepared]]:
    """`paths` as Batches of Rows, in order, decoded by loader threads ahead of the caller (`decoded_batches`).

    prepare: the per-file work of the loader threads (default `image_input(loaded)`, the input tensor); an
    ImageError it raises makes that file's row carry the reason. tensor: the input tensor in what prepare gave
    (default: prepare gives the tensor); None leaves the row unscored, e.g. a file screening could hash but
    not decode. run_forward: False hands the stacked inputs to a caller that runs its own pass (explanations
    need gradients); otherwise each batch is one forward pass under the model's lock that fills each readable
    row's probability and novelty score, and `features` adds the pooled head inputs. batch_size: default
    `default_batch_size(loaded.device)`. Close the iterator to stop early.
    """
    prepare = prepare or image_input(loaded)
    tensor = tensor or (lambda prepared: prepared)
    decoded = decoded_batches(paths, prepare, batch_size or default_batch_size(loaded.device), workers)
    with closing(decoded):
        for batch in decoded:
            rows = [Row(i, None, p.reason) if isinstance(p, ImageError) else Row(i, p) for i, p in batch]
            readable = [row for row in rows if row.error is None and tensor(row.prepared) is not None]
            inputs = stack_inputs(loaded, [tensor(row.prepared) for row in readable]) if readable else None
            result = Batch(rows, readable, inputs)
            if run_forward and inputs is not None:
                probabilities, unlike, result.features = forward(loaded, inputs, features)
                for row, probability, score in zip(readable, probabilities, unlike):
                    row.probability, row.unlike_training = probability, score
            yield result
