"""Collapse of a causal language model: its last hidden states, labelled by the next token.

A causal LM classifies each position's final hidden state `h_t` (after the last layer norm,
the input of the unembedding) into the next token `y_t = x_{t+1}`: the "classes" are the
vocabulary and the classifier is the output embedding `W` (`logits = h_t Wᵀ`). This module
streams `(h_t, x_{t+1})` pairs of any Hugging Face-style causal LM — a module called as
`model(input_ids=…, attention_mask=…, output_hidden_states=True)` that returns
`hidden_states` — into a [`CollapseMetrics`][etfcore.training.metric.CollapseMetrics] on the
model's device (float64 sufficient statistics, mergeable across processes), from which every
collapse metric follows; [`output_embedding`][etfcore.training.language_model.output_embedding]
gives `W` for NC3.

Nothing here downloads anything: load the model and tokenizer you have locally, e.g.
`AutoModelForCausalLM.from_pretrained(path, local_files_only=True)`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

import torch

from ..errors import ParameterError, ShapeError
from .metric import CollapseMetrics

Batch = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def _batch_tensors(batch: Batch) -> tuple:
    """`(input_ids, attention_mask)` of a batch: a tensor of token ids, or a mapping with
    `input_ids` and optionally `attention_mask` (a tokenizer's output)."""
    if isinstance(batch, torch.Tensor):
        ids, mask = batch, None
    elif isinstance(batch, Mapping) and "input_ids" in batch:
        ids, mask = batch["input_ids"], batch.get("attention_mask")
    else:
        raise ParameterError(
            "a batch must be a tensor of token ids or a mapping with 'input_ids' (and "
            "optionally 'attention_mask')"
        )
    if ids.dim() != 2:
        raise ShapeError(f"input_ids must be (batch, sequence), got shape {tuple(ids.shape)}")
    if mask is not None and mask.shape != ids.shape:
        raise ShapeError(
            f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}"
        )
    return ids, mask


def next_token_pairs(
    model: torch.nn.Module, batch: Batch, *, layer: int = -1
) -> tuple:
    """The next-token pairs of one batch.

    Parameters
    ----------
    model
        A Hugging Face-style causal LM.
    batch
        A tensor of token ids `(batch, sequence)`, or a mapping with `input_ids` and optionally
        `attention_mask` (a tokenizer's output).
    layer
        The hidden states used (default the last).

    Returns
    -------
    tuple of torch.Tensor
        `(features, labels)`: the hidden states of `layer` at every position whose next token
        exists and is not padding (positions `t` with `mask[t] = mask[t+1] = 1`), `(n, p)` in
        the model's dtype, and that next token, `(n,)` int64; both on the model's device.

    Raises
    ------
    ParameterError
        For a batch that is neither a tensor nor a mapping with `input_ids`.
    ShapeError
        For `input_ids` that are not 2-D or a mask of another shape.
    """
    ids, mask = _batch_tensors(batch)
    device = next(model.parameters()).device
    ids = ids.to(device)
    mask = torch.ones_like(ids) if mask is None else mask.to(device)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states[layer]
    keep = (mask[:, :-1] != 0) & (mask[:, 1:] != 0)
    return hidden[:, :-1][keep], ids[:, 1:][keep].to(torch.int64)


def output_embedding(model: torch.nn.Module) -> torch.Tensor:
    """The unembedding `W` (`vocab × p`) of a Hugging Face-style causal LM
    (`model.get_output_embeddings().weight`), the classifier the last hidden states meet.

    Raises
    ------
    ParameterError
        When the model has no output embedding.
    """
    get = getattr(model, "get_output_embeddings", None)
    emb = get() if callable(get) else None
    if emb is None or not hasattr(emb, "weight"):
        raise ParameterError("the model has no output embedding (get_output_embeddings())")
    return emb.weight.detach()


def language_model_collapse(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    *,
    num_classes: Optional[int] = None,
    layer: int = -1,
    max_tokens: Optional[int] = None,
    metric: Optional[CollapseMetrics] = None,
    **metric_options: Any,
) -> CollapseMetrics:
    """Stream the next-token pairs of `batches` through `model` into a collapse metric.

    The model runs in eval mode (its mode is restored after).

    Parameters
    ----------
    model
        A Hugging Face-style causal LM.
    batches
        Batches as [`next_token_pairs`][etfcore.training.language_model.next_token_pairs]
        takes them.
    num_classes
        The number of classes; defaults to the output embedding's rows (the vocabulary).
    layer
        The hidden states used (default the last).
    max_tokens
        Stop after this many pairs (the last batch trimmed); all when `None`.
    metric
        A metric to continue (e.g. another shard's); a new
        [`CollapseMetrics`][etfcore.training.metric.CollapseMetrics] is created on the model's
        device when `None`.
    **metric_options
        Passed to the new metric, e.g. `products="float64"`.

    Returns
    -------
    CollapseMetrics
        The metric: `metric.to_core()` gives the
        [`etfcore.CollapseStats`][etfcore.CollapseStats], `metric.compute()` every metric.

    Raises
    ------
    ParameterError
        When `max_tokens < 1`, or no batch held a next-token pair.

    Examples
    --------
    >>> import torch, etfcore.training as et
    >>> class TinyLM(torch.nn.Module):          # any module with the Hugging Face call
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb = torch.nn.Embedding(8, 4)
    ...     def forward(self, input_ids, attention_mask, output_hidden_states):
    ...         return type("Out", (), {"hidden_states": (self.emb(input_ids),)})
    >>> m = et.language_model_collapse(TinyLM(), [torch.arange(16).reshape(2, 8) % 8],
    ...                                num_classes=8)
    >>> int(m.to_core().num_samples)
    14
    """
    if num_classes is None:
        num_classes = int(output_embedding(model).shape[0])
    if max_tokens is not None and max_tokens < 1:
        raise ParameterError(f"max_tokens must be >= 1, got {max_tokens}")
    device = next(model.parameters()).device
    seen = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            h, y = next_token_pairs(model, batch, layer=layer)
            if max_tokens is not None:
                h, y = h[: max_tokens - seen], y[: max_tokens - seen]
            if h.shape[0] == 0:
                continue
            if metric is None:
                metric = CollapseMetrics(num_classes, h.shape[1], **metric_options).to(device)
            metric.update(h, y)
            seen += h.shape[0]
            if max_tokens is not None and seen >= max_tokens:
                break
    finally:
        model.train(was_training)
    if metric is None:
        raise ParameterError("no batch held a next-token pair (empty or all padding)")
    return metric
