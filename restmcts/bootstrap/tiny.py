"""The embedded default's tiny models, built from nothing.

A tokenizer whose tokens are the arith grammar's words, single digits, symbols, spaces and
newlines (so every number is spelled digit by digit and the step delimiter is one token), a
tiny Llama causal LM as the policy, and a PRM that is the same backbone with a one-label
sequence-classification head read through a sigmoid (restmcts.checkpoints.load_prm).
"""

from __future__ import annotations

from typing import Any

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = ["Start", "with", "Add", "Subtract", "Multiply", "by", "What", "is", "the", "result",
         "The", "answer", "solved", "Yes", "No"]
SYMBOLS = list("0123456789+-*/=.?:,()") + [" ", "\n"]


def build_arith_tokenizer() -> Any:
    """A word/digit-level tokenizer for the arith grammar; decoding is exact concatenation."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + SYMBOLS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[A-Za-z]+|\d|\s|[^\sA-Za-z\d]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )


def tiny_llama_config(tokenizer: Any, hidden_size: int = 128, num_layers: int = 4, num_heads: int = 4,
                      max_position: int = 256) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_tiny_models(tokenizer: Any, seed: int = 0, **sizes: int) -> tuple[Any, Any]:
    """A randomly initialised (policy, PRM) pair; the PRM starts from the policy's backbone."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_llama_config(tokenizer, **sizes)
    policy = LlamaForCausalLM(config)
    prm_config = tiny_llama_config(tokenizer, **sizes)
    prm_config.num_labels = 1
    prm = LlamaForSequenceClassification(prm_config)
    prm.model.load_state_dict(policy.model.state_dict())
    return policy, prm
