"""The language-model feature source, offline: a randomly initialised tiny GPT-2 (no download)
streams next-token pairs into the collapse statistics; checked against the pairs collected by
hand and the core's statistics of them."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import etfcore as ec  # noqa: E402
import etfcore.training as et  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in (12, 9):
        ids = torch.randint(0, 40, (3, length), generator=g)
        mask = torch.ones_like(ids)
        mask[0, length - 3 :] = 0  # right padding of the first sequence
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def test_pairs_are_the_hidden_states_the_lm_head_classifies(tiny_gpt2):
    b = batches()[0]
    h, y = et.next_token_pairs(tiny_gpt2, b)
    assert h.shape == (3 * 11 - 3, 16) and y.dtype == torch.int64
    with torch.no_grad():
        logits = tiny_gpt2(**b).logits
    keep = (b["attention_mask"][:, :-1] != 0) & (b["attention_mask"][:, 1:] != 0)
    w = et.output_embedding(tiny_gpt2)
    assert w.shape == (40, 16)
    torch.testing.assert_close(h @ w.T, logits[:, :-1][keep], rtol=1e-5, atol=1e-5)
    assert torch.equal(y, b["input_ids"][:, 1:][keep])


def test_streamed_statistics_equal_the_core_on_collected_pairs(tiny_gpt2):
    m = et.language_model_collapse(tiny_gpt2, batches(), products="float64")
    hs, ys = zip(*(et.next_token_pairs(tiny_gpt2, b) for b in batches()))
    h = torch.cat(hs).double().numpy()
    y = torch.cat(ys).numpy()
    ref = ec.CollapseStats(40, 16)
    ref.update(h, y)
    got = m.to_core()
    assert got.num_samples == ref.num_samples == len(y)
    np.testing.assert_array_equal(got.class_counts, ref.class_counts)
    present = ref.class_counts > 0
    np.testing.assert_allclose(got.class_means()[present], ref.class_means()[present], atol=1e-9)
    np.testing.assert_allclose(
        got.within_class_covariance(), ref.within_class_covariance(), atol=1e-9
    )
    # max_tokens stops early, the last batch trimmed; an existing metric continues.
    part = et.language_model_collapse(tiny_gpt2, batches(), max_tokens=40)
    assert part.to_core().num_samples == 40
    more = et.language_model_collapse(tiny_gpt2, batches(1), metric=part)
    assert more is part and more.to_core().num_samples > 40


def test_bad_batches_are_typed_errors(tiny_gpt2):
    with pytest.raises(ec.ShapeError):
        et.language_model_collapse(tiny_gpt2, [torch.zeros(5, dtype=torch.int64)])
    with pytest.raises(ec.ParameterError):
        et.language_model_collapse(tiny_gpt2, [[1, 2, 3]])
    pad = {"input_ids": torch.zeros(2, 4, dtype=torch.int64), "attention_mask": torch.zeros(2, 4)}
    with pytest.raises(ec.ParameterError, match="no batch"):
        et.language_model_collapse(tiny_gpt2, [pad])
