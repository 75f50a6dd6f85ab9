"""The Tulu chat format, shared by token counting (what the model will see) and the trainer.

open-instruct's Tulu 2 format: every message is ``<|role|>\\n{content}\\n``; assistant messages end
with the tokenizer's end-of-sequence token before that newline is dropped, i.e.
``<|assistant|>\\n{content}</s>\\n``. See open-instruct ``encode_with_messages_format``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mixer.core.records import Message, Record

#: Jinja chat template producing the Tulu format, with ``{% generation %}`` markers around the
#: assistant text and its end-of-turn token so ``return_assistant_tokens_mask`` (and TRL's
#: ``assistant_only_loss``) train on exactly the assistant turns. It starts with the tokenizer's BOS
#: token (when it has one): open-instruct tokenised the rendered text with ``add_special_tokens`` on,
#: so Llama saw ``<s>`` first, while ``apply_chat_template`` adds no special tokens by itself.
TULU_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' }}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def render_tulu(messages: Sequence[Message], eos_token: str = "</s>") -> str:
    """The conversation as the model sees it in training (used to count tokens)."""
    parts: list[str] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "assistant":
            parts.append(f"<|assistant|>\n{content}{eos_token}\n")
        else:
            parts.append(f"<|{role}|>\n{content}\n")
    return "".join(parts)


def record_texts(record: Record) -> list[str]:
    """The texts the model sees in training: one conversation, or both sides of a preference pair."""
    texts = [render_tulu(record["messages"])]
    rejected = record.get("rejected")
    if rejected:
        texts.append(render_tulu([*record["messages"][:-1], *rejected]))
    return texts
