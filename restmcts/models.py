"""Building and loading the policy and PRM checkpoints (transformers, local path or hub name).

The embedded default uses a tiny Llama built from nothing: a tokenizer whose tokens are the
arith grammar's words, single digits, symbols, spaces and newlines (so every number is spelled
digit by digit and the step delimiter is one token), a causal LM policy, and a PRM that is the
same backbone with a one-label sequence-classification head read through a sigmoid.
Both save as ordinary Hugging Face folders (safetensors) that transformers and vLLM load.
"""

from __future__ import annotations

from pathlib import Path
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


def save(model: Any, tokenizer: Any, path: str | Path) -> None:
    """Save a checkpoint folder (safetensors + tokenizer) that `from_pretrained` loads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str, dtype: str = "float32", device: str = "cpu") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    _require(path, "model.policy")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, _DTYPES[dtype]))
    return model.to(device).eval()


def load_prm(path: str, dtype: str = "float32", device: str = "cpu") -> Any:
    """A one-label sequence classifier; its sigmoid output is the value in [0, 1]."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _require(path, "model.prm")
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=getattr(torch, _DTYPES[dtype])
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    return model.to(device).eval()


def _require(path: str, key: str) -> None:
    """A local-looking path that does not exist fails here, naming the key, not deep in transformers."""
    p = Path(path)
    looks_local = path.startswith((".", "/", "~")) or p.parts[:1] == ("runs",) or len(p.parts) > 2
    if looks_local and not p.exists():
        raise FileNotFoundError(
            f"{key}: no checkpoint at {path!r}. Run `make bootstrap` (or jobs/bootstrap.py) to build the "
            f"embedded default, or set {key} to a local folder or a hub name."
        )


def read_weights(path: str) -> dict[str, Any]:
    """The tensors of a saved checkpoint folder (safetensors), without building the model."""
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in checkpoint folder {path!r}")
    weights: dict[str, Any] = {}
    for f in files:
        weights.update(load_file(str(f)))
    return weights
