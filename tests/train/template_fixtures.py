"""Real chat templates in small test tokenizers, for the template and tokenized-output tests.

The published templates are copied as their model cards' ``tokenizer_config.json`` ship them (the
source is named on each); they are data, facts about those models. The ``*_generation`` variants add
``{% generation %}`` markers around the assistant output so that ``return_assistant_tokens_mask`` works:
Llama 3's and Qwen3's are TRL's own (trl/chat_templates/*_training.jinja, read from the installed TRL at
test time), the others are written here the same way. The ``broken_*`` templates are deliberately wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixer.core.chat import TULU_CHAT_TEMPLATE

#: meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json ``chat_template``
LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA2_CHAT_GENERATION = LLAMA2_CHAT.replace(
    "{{ ' '  + content.strip() + ' ' + eos_token }}",
    "{% generation %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endgeneration %}")

#: allenai/Llama-3.1-Tulu-3-8B, tokenizer_config.json (open-instruct's ``tulu`` template, with the newlines
#: as open-instruct's source holds them, which its pinned sha256 below covers)
TULU3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{% if not loop.last %}"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ '<|assistant|>\n'  + message['content'] + eos_token }}{% endif %}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}{% endfor %}"
)
#: sha256 of TULU3 as open-instruct pins it (a check that the text above is the published one)
TULU3_SHA256 = "ac7498a36a719da630e99d48e6ebc4409de85a77556c2b6159eeb735bcbd11df"

#: teknium/OpenHermes-2.5-Mistral-7B, tokenizer_config.json (ChatML)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_GENERATION = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: mistralai/Mixtral-8x7B-Instruct-v0.1 at 1e637f2d, tokenizer_config.json (also Mistral-7B-Instruct-v0.2)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
MISTRAL_GENERATION = MISTRAL.replace("{{ message['content'] + eos_token}}",
                                     "{% generation %}{{ message['content'] + eos_token}}{% endgeneration %}")


def trl_template(name: str) -> str:
    """A template as the installed TRL ships it (``llama3`` = meta-llama/Meta-Llama-3-8B-Instruct's)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


# deliberately wrong: the role header inside the generation span (trains on "<|im_start|>assistant\n")
BROKEN_HEADER_IN_MASK = CHATML_GENERATION.replace(
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content']",
    "{% generation %}{{ '<|im_start|>assistant\\n' + message['content']")
# deliberately wrong: the end-of-turn token left out of the span (the model never learns to stop)
BROKEN_EOS_OUTSIDE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] }}"
    "{% endgeneration %}{{ eos_token + '\\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# deliberately wrong: user turns inside generation spans as well
BROKEN_USER_TRAINED = TULU_CHAT_TEMPLATE.replace(
    "{{ '<|user|>\n' + message['content'] + '\n' }}",
    "{{ '<|user|>\n' }}{% generation %}{{ message['content'] + '\n' }}{% endgeneration %}")


@dataclass(frozen=True)
class Family:
    """The special tokens a template family needs in its tokenizer."""

    bos: str | None
    eos: str
    specials: tuple[str, ...]


LLAMA2 = Family("<s>", "</s>", ("<unk>", "<s>", "</s>"))
CHATML_FAMILY = Family("<s>", "<|im_end|>", ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"))
LLAMA3 = Family("<|begin_of_text|>", "<|eot_id|>", ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                      "<|end_header_id|>", "<|eot_id|>"))
QWEN3 = Family(None, "<|im_end|>", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                                    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"))


def _texts() -> list[str]:
    base = ["What is two plus two?", "Four.", "Name a colour.", "Blue.", "You are a terse assistant.",
            "Say hello.", "Hello there!", "Now say goodbye.", "Goodbye, friend.", "get_weather", "Paris",
            '{"city": "Paris"}', "sunny, 21 degrees", "Let me think about the weather first."]
    return base * 5 + [f"The quick brown fox {i} jumps over the lazy dog; answer {i * 7}." for i in range(200)]


def make_template_tokenizer(out: Path, template: str, family: Family, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained here (offline) with ``family``'s special tokens and ``template`` as its
    ``chat_template`` in tokenizer_config.json, saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(family.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_texts(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos)
    fast.chat_template = template
    fast.save_pretrained(out)
    return out
