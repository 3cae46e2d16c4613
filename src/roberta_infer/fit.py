"""The training loop `train` runs: masked-LM warm-up, fine-tuning with held-out model selection, and the state a
killed run resumes from. PyTorch, AdamW with RoBERTa's settings, batches of similar length."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import RobertaForMaskedLM

from .checkpoint import RobertaClassifier
from .errors import RobertaInferError
from .predict import classify, length_batches
from .tokenise import TextEncoder, pad_to

# The vocabulary's specials in id order (as fairseq's dictionary, <mask> last): a model trained from scratch numbers
# its tokens after them.
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def shuffled_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of each training batch, in random order: shuffled pools of 64 batches, each pool cut into batches
    of similar length by `predict.length_batches`, so padding costs little."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 64
    batches = []
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        batches += [part[index] for index in length_batches(lengths[part], batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def optimizer_and_schedule(model: torch.nn.Module, *, lr: float, weight_decay: float, warmup: float,
                           steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW as RoBERTa (β₂ 0.98, no decay on biases and LayerNorms) over the parameters that require grad, linear
    warm-up then linear decay to 0."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.ndim > 1 and "LayerNorm" not in n]
    rest = [p for n, p in trained if not (p.ndim > 1 and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98), eps=1e-6)
    ramp = max(1, int(warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / ramp, max(0.0, (steps - step) / max(1, steps - ramp))))
    return optimizer, schedule


def progress_bar(console: Console, show: bool) -> Progress:
    """A Rich progress bar of steps with the running loss and the last held-out accuracy (hidden unless `show`)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("held-out {task.fields[acc]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not show)


def mlm_warmup(classifier: RobertaClassifier, rows: list[list[int]], *, steps: int, batch_size: int, lr: float, warmup: float,
               weight_decay: float, rng: np.random.Generator, console: Console, show_progress: bool) -> float:
    """Masked-LM pre-training of the encoder on the training sentences (BERT's 15 %, 80/10/10); returns the last loss."""
    model = classifier.model
    mlm = RobertaForMaskedLM(model.config)
    mlm.roberta.load_state_dict(model.roberta.state_dict())
    mlm.train()
    enc = classifier.encoder
    optimizer, schedule = optimizer_and_schedule(mlm, lr=lr, weight_decay=weight_decay, warmup=warmup, steps=steps)
    lengths = np.array([len(r) for r in rows])
    batches: list[np.ndarray] = []
    loss_value = float("nan")
    with progress_bar(console, show_progress) as progress:
        task = progress.add_task("masked LM", total=steps, loss="-", acc="-")
        for step in range(steps):
            if not batches:
                batches = shuffled_batches(lengths, batch_size, rng)
            batch = [rows[i] for i in batches.pop()]
            ids, _ = pad_to(batch, max(len(r) for r in batch), pad=enc.pad, eos=enc.eos)
            chosen = real_tokens(ids, enc) & (rng.random(ids.shape) < 0.15)
            if not chosen.any():
                continue
            draw = rng.random(ids.shape)
            inputs = np.where(chosen & (draw < 0.8), SPECIALS.index("<mask>"), ids)
            inputs = np.where(chosen & (draw >= 0.9), rng.integers(len(SPECIALS), model.config.vocab_size, ids.shape), inputs)
            states = mlm.roberta(input_ids=torch.from_numpy(inputs), attention_mask=torch.from_numpy(ids != enc.pad).long())[0]
            where = torch.from_numpy(chosen)  # the vocabulary projection only where it is scored: most of the cost
            loss = torch.nn.functional.cross_entropy(mlm.lm_head(states[where]), torch.from_numpy(ids[chosen]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            progress.update(task, advance=1, loss=f"{loss_value:.3f}")
    model.roberta.load_state_dict(mlm.roberta.state_dict())
    return round(loss_value, 4)


def real_tokens(ids: np.ndarray, encoder: TextEncoder) -> np.ndarray:
    """Where `ids` holds text tokens rather than `<s>`, `</s>` or padding."""
    return (ids != encoder.pad) & (ids != encoder.bos) & (ids != encoder.eos)


@dataclass
class TrainState:
    """Where `fit` saves its state (model, optimizer, schedule, RNGs, position) every `every` steps (0: never), and the
    fingerprint of the run's arguments that a resumed run must match."""

    path: Path
    every: int
    fingerprint: str

    def load(self) -> dict | None:
        """The saved state, None when there is none; a state of other arguments is refused (RobertaInferError)."""
        if not self.every or not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, weights_only=False)  # our own file, written by save() below
        except Exception as e:  # a file cut short by a kill mid-write cannot happen (atomic), but a foreign one can
            raise RobertaInferError(f"{self.path} is not a training state ({e}): delete it to start afresh") from None
        if saved.get("fingerprint") != self.fingerprint:
            raise RobertaInferError(f"{self.path} holds a run with other arguments: run that command again to resume "
                                    "it, or delete the file to start this one afresh")
        return saved

    def save(self, **state) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"fingerprint": self.fingerprint, **state}, tmp)
        os.replace(tmp, self.path)


def fit(classifier: RobertaClassifier, rows: list[list[int]], labels: np.ndarray, texts: list[str], train_rows: list[int],
        heldout_rows: list[int], *, epochs: int, batch_size: int, lr: float, weight_decay: float, warmup: float,
        label_smoothing: float, token_dropout: float, average: int, rng: np.random.Generator, console: Console,
        show_progress: bool, freeze_embeddings: bool = False,
        state: TrainState | None = None) -> tuple[list[dict], str]:
    """Fine-tune on `train_rows`, score the held-out sentences after each epoch; load the best candidate weights.

    Candidates are each epoch's weights and, with `average` > 1, the mean of the last `average` epochs'.
    Returns the per-epoch history and which candidate was kept. With `state`, resumes from its saved state and
    saves there as it goes (`TrainState`).
    """
    model, enc = classifier.model, classifier.encoder
    model.roberta.embeddings.word_embeddings.weight.requires_grad_(not freeze_embeddings)
    lengths = np.array([len(rows[i]) for i in train_rows])
    steps_per_epoch = math.ceil(len(train_rows) / batch_size)
    optimizer, schedule = optimizer_and_schedule(model, lr=lr, weight_decay=weight_decay, warmup=warmup,
                                                 steps=epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    held_texts, held_labels = [texts[i] for i in heldout_rows], labels[heldout_rows]

    def heldout_accuracy() -> float:
        model.eval()
        predicted = classify(classifier, held_texts, batch_size=128).argmax(axis=1)
        return float((predicted == held_labels).mean())

    history: list[dict] = []
    snapshots: list[dict[str, torch.Tensor]] = []
    best: tuple[float, str, dict[str, torch.Tensor]] = (-1.0, "", {})
    first_epoch, done_steps, total, count = 1, 0, 0.0, 0
    saved = state.load() if state is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        history, snapshots, best = saved["history"], saved["snapshots"], saved["best"]
        first_epoch, done_steps, total, count = saved["epoch"], saved["step"], saved["total"], saved["count"]
        console.print(f"resuming from {state.path}: epoch {first_epoch}, step {done_steps}/{steps_per_epoch}", highlight=False)
    with progress_bar(console, show_progress) as progress:
        task = progress.add_task("fine-tune" if classifier.source.get("kind") != "scratch" else "train",
                                 total=epochs * steps_per_epoch, completed=(first_epoch - 1) * steps_per_epoch + done_steps,
                                 loss="-", acc="-")
        for epoch in range(first_epoch, epochs + 1):
            model.train()
            epoch_rng = rng.bit_generator.state  # the epoch's batches are redrawn from here on resume
            batches = shuffled_batches(lengths, batch_size, rng)
            for step in range(done_steps, len(batches)):
                index = batches[step]
                batch = [rows[train_rows[i]] for i in index]
                ids, _ = pad_to(batch, max(len(r) for r in batch), pad=enc.pad, eos=enc.eos)
                if token_dropout:  # drawn only when used, so a resumed run's batches are the uninterrupted run's
                    ids[real_tokens(ids, enc) & (rng.random(ids.shape) < token_dropout)] = enc.unk
                x = torch.from_numpy(ids)
                logits = model(input_ids=x, attention_mask=(x != enc.pad).long()).logits
                loss = loss_fn(logits, torch.from_numpy(labels[[train_rows[i] for i in index]]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                total, count = total + loss.item() * len(index), count + len(index)
                progress.update(task, advance=1, loss=f"{total / count:.3f}")
                if state is not None and state.every and (step + 1) % state.every == 0 and step + 1 < len(batches):
                    after = rng.bit_generator.state
                    rng.bit_generator.state = epoch_rng
                    state.save(model=model.state_dict(), optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                               rng=epoch_rng, torch_rng=torch.get_rng_state(), history=history, snapshots=snapshots,
                               best=best, epoch=epoch, step=step + 1, total=total, count=count)
                    rng.bit_generator.state = after
                    console.print(f"epoch {epoch}, step {step + 1}/{len(batches)}: loss {total / count:.4f}, "
                                  f"state saved to {state.path}", highlight=False)
            accuracy = heldout_accuracy()
            history.append({"epoch": epoch, "train_loss": round(total / count, 4), "heldout_accuracy": round(accuracy, 4)})
            progress.update(task, acc=f"{100 * accuracy:.2f} %")
            console.print(f"epoch {epoch}/{epochs}: loss {total / count:.4f}, held-out accuracy {100 * accuracy:.2f} %",
                          highlight=False)
            snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
            snapshots = [*snapshots, snapshot][-average:]
            if accuracy >= best[0]:  # ties go to the later, longer-trained epoch
                best = (accuracy, f"epoch {epoch}", snapshot)
            done_steps, total, count = 0, 0.0, 0
            if state is not None and state.every and epoch < epochs:
                state.save(model=model.state_dict(), optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                           rng=rng.bit_generator.state, torch_rng=torch.get_rng_state(), history=history,
                           snapshots=snapshots, best=best, epoch=epoch + 1, step=0, total=0.0, count=0)
    if average > 1 and len(snapshots) == average:
        model.load_state_dict({k: torch.stack([s[k].float() for s in snapshots]).mean(0).to(v.dtype)
                               for k, v in snapshots[-1].items()})
        accuracy = heldout_accuracy()
        history.append({"average_of_epochs": [epochs - average + 1, epochs], "heldout_accuracy": round(accuracy, 4)})
        console.print(f"mean of the last {average} epochs: held-out accuracy {100 * accuracy:.2f} %", highlight=False)
        if accuracy >= best[0]:
            return history, f"mean of epochs {epochs - average + 1}-{epochs}"
    model.load_state_dict(best[2])
    return history, best[1]
