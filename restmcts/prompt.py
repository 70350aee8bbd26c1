"""How a question and a partial solution become model text; shared by engines, learners and jobs.

    text = fmt.prompt(question) + fmt.solution(steps)

`prompt` is what the policy conditions on (the question, through the tokenizer's chat template
for real chat models); `solution` is the steps so far, each followed by the step delimiter, so
the next generated step ends at the delimiter. The PRM scores `render(question, steps)`; the
policy learner puts its loss on the `solution` part only. The format knows nothing about
tokenization beyond calling the chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptFormat:
    delimiter: str = "\n"
    chat_template: bool = False
    system_prompt: str = ""
    tokenizer: Any = None  # needed only with chat_template

    def prompt(self, question: str) -> str:
        if not self.chat_template:
            return question + self.delimiter
        if self.tokenizer is None:
            raise ValueError("data.chat_template is true but no tokenizer was given to PromptFormat")
        messages = [{"role": "user", "content": question}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def solution(self, steps: Sequence[str]) -> str:
        return "".join(step + self.delimiter for step in steps)

    def render(self, question: str, steps: Sequence[str]) -> str:
        return self.prompt(question) + self.solution(steps)

    @classmethod
    def from_config(cls, data_cfg: Any, tokenizer: Any = None) -> PromptFormat:
        return cls(data_cfg.step_delimiter, data_cfg.chat_template, data_cfg.system_prompt, tokenizer)
