"""Named chat templates for base models that ship none (the model's own template is the default)."""

from __future__ import annotations

TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # Stanford Alpaca's prompt (as in OpenFedLLM's `alpaca` template), one exchange per turn.
    "alpaca": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        "{% elif m['role'] == 'user' %}{{ '### Instruction:\n' + m['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + m['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    # Vicuna v1.1 (FastChat), as used by OpenFedLLM/FedLLM-Bench for multi-turn data.
    "vicuna": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + ' ' }}"
        "{% elif m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
        "{% else %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    ),
}


def apply_template(tokenizer, name: str | None) -> None:
    """Use template ``name`` (or chatml when the tokenizer has none); ``None`` keeps the model's own."""
    if name is not None:
        if name not in TEMPLATES:
            raise ValueError(f"data.template: unknown template {name!r}; choose from {sorted(TEMPLATES)}")
        tokenizer.chat_template = TEMPLATES[name]
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = TEMPLATES["chatml"]
