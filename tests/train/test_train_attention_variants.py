"""torch_varlen computes what the model's own attention computes, or refuses the model by name.

Issue 21 point 2: a Mistral run on sequences longer than its sliding window trained with full attention,
silently. The CPU path of ``varlen_attention`` is the reference the CUDA kernel is held to, so these
tests compare it with transformers' eager attention on tiny models.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl_collator = pytest.importorskip("trl.trainer.sft_trainer")

from mixer.core.errors import MixerError  # noqa: E402
from mixer.train.accel import attention  # noqa: E402
from mixer.train.accel.attention import (  # noqa: E402
    TORCH_VARLEN,
    choose_attention,
    register_torch_varlen,
    torch_varlen_unsupported,
    varlen_attention,
)

WINDOW = 4


def _mistral(window: int | None = WINDOW):
    torch.manual_seed(0)
    config = transformers.MistralConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, sliding_window=window,
                                        tie_word_embeddings=False)
    return transformers.MistralForCausalLM(config).eval()


def _logits(model, implementation: str, **inputs):
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(use_cache=False, **inputs).logits


def test_torch_varlen_applies_mistrals_sliding_window_beyond_the_window() -> None:
    register_torch_varlen()
    model = _mistral()
    ids = torch.tensor([list(range(3, 3 + 13))])  # 13 tokens > the 4-token window
    eager = _logits(model, "eager", input_ids=ids)
    varlen = _logits(model, TORCH_VARLEN, input_ids=ids)
    torch.testing.assert_close(varlen, eager, rtol=1e-4, atol=1e-4)
    # the window matters here: full causal attention gives other logits after the first 4 tokens
    model.config.sliding_window = None
    full = _logits(model, "eager", input_ids=ids)
    assert not torch.allclose(full[0, WINDOW:], eager[0, WINDOW:], atol=1e-4)
    torch.testing.assert_close(full[0, :WINDOW], eager[0, :WINDOW], rtol=1e-4, atol=1e-4)


def test_torch_varlen_applies_the_window_inside_each_sequence_of_a_padding_free_row() -> None:
    register_torch_varlen()
    model = _mistral()
    seqs = [list(range(3, 3 + n)) for n in (9, 3, 11)]
    batch = trl_collator.DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s} for s in seqs])
    flat = _logits(model, TORCH_VARLEN, input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                   cu_seq_lens_q=batch["cu_seq_lens_q"], cu_seq_lens_k=batch["cu_seq_lens_k"],
                   max_length_q=batch["max_length_q"], max_length_k=batch["max_length_k"])[0]
    alone = torch.cat([_logits(model, "eager", input_ids=torch.tensor([s]))[0] for s in seqs])
    torch.testing.assert_close(flat, alone, rtol=1e-4, atol=1e-4)
    # and in a padded batch (2D mask), each row is its own sequence with its own window
    padded = trl_collator.DataCollatorForLanguageModeling(pad_token_id=0)([{"input_ids": s} for s in seqs])
    masked = _logits(model, TORCH_VARLEN, input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
    torch.testing.assert_close(masked[padded["attention_mask"].bool()], alone, rtol=1e-4, atol=1e-4)


def test_the_cuda_kernel_gets_the_window_as_flash_attentions_left_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """``window_size=(W - 1, 0)``: query i sees keys i-W+1..i, transformers' ``j > i - W``."""
    import torch.nn.attention.varlen as varlen_module

    seen = {}

    def fake_varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                         window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
        seen["window_size"] = window_size
        return query

    monkeypatch.setattr(varlen_module, "varlen_attn", fake_varlen_attn)
    attention._varlen_keywords.cache_clear()
    try:
        q = torch.zeros(10, 2, 8, dtype=torch.bfloat16)
        cu = torch.tensor([0, 10], dtype=torch.int32)
        attention._cuda_varlen(q, q, q, cu, 10, None, False, WINDOW)
        assert seen["window_size"] == (WINDOW - 1, 0)
        attention._cuda_varlen(q, q, q, cu, 10, None, False, None)
        assert seen["window_size"] == (-1, 0)
        attention._cuda_varlen(q, q, q, cu, 10, None, False, 4096)  # window longer than every sequence
        assert seen["window_size"] == (-1, 0)
    finally:
        attention._varlen_keywords.cache_clear()


def _gemma2_config():
    return transformers.Gemma2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
                                     attn_logit_softcapping=50.0)


def test_torch_varlen_is_refused_for_a_model_with_logit_soft_capping_naming_it() -> None:
    assert torch_varlen_unsupported(_gemma2_config()) == ["logit soft-capping (attn_logit_softcapping=50.0)"]
    with pytest.raises(MixerError, match="soft-capping"):
        choose_attention(TORCH_VARLEN, cuda=True, model_config=_gemma2_config())


def test_torch_varlen_is_refused_for_a_model_with_attention_sinks() -> None:
    config = transformers.GptOssConfig(vocab_size=128, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    with pytest.raises(MixerError, match="attention sinks"):
        choose_attention(TORCH_VARLEN, cuda=True, model_config=config)


def test_auto_does_not_pick_torch_varlen_for_a_model_it_cannot_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(attention, "flash_available", lambda name: False)
    monkeypatch.setattr(attention, "torch_varlen_available", lambda: True)
    choice = choose_attention("auto", cuda=True, model_config=_gemma2_config())
    assert choice.implementation == "sdpa" and "soft-capping" in choice.reason
    # a sliding window alone is computed by the kernel, so auto keeps it
    mistral = transformers.MistralConfig(sliding_window=4096)
    assert choose_attention("auto", cuda=True, model_config=mistral).implementation == TORCH_VARLEN


def test_a_layer_that_passes_softcap_or_sinks_at_run_time_is_refused_not_ignored() -> None:
    q = torch.zeros(1, 2, 5, 8)
    with pytest.raises(MixerError, match="soft-capping"):
        varlen_attention(None, q, q, q, None, softcap=30.0)
    with pytest.raises(MixerError, match="sinks"):
        varlen_attention(None, q, q, q, None, s_aux=torch.zeros(2))


def test_a_run_asking_torch_varlen_for_a_soft_capped_model_stops_before_loading(tmp_path) -> None:
    from mixer.train.accel.host import resolve_runtime
    from mixer.train.config import load_config

    _gemma2_config().save_pretrained(tmp_path)
    cfg = load_config("sft", None, [f"attn_implementation={TORCH_VARLEN}"], model=str(tmp_path))
    with pytest.raises(MixerError, match="soft-capping"):
        resolve_runtime(cfg, cuda=True)
