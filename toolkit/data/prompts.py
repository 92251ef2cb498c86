"""Prompt sets for decoder-only LLMs: instructions built from the shared data's examples (no torch).

A :class:`PromptSet` turns one example of a task (``text_a``, ``text_b``) into the user message of a chat; the
model's chat template wraps it. The example's text comes last, so every prompt of a set shares the longest possible
prefix (system prompt and instruction), which collection computes once. Two kinds:

- *generation* sets (``agnews_headline``, ``sst2_sentiment``, ``qnli_answer``): the model writes a short answer
  (greedy, up to ``max_new_tokens``); quality against the reference where one exists (chrF against the AG News
  title) or the label word the answer starts with (accuracy);
- *label* sets (``sst2_label``, ``agnews_topic``): zero-shot classification by the label words' first tokens at the
  position after the prompt (one class may have several surface forms; their logits are pooled by logsumexp).

>>> PROMPT_SETS["sst2_label"].user_message("a gripping film", None).splitlines()[-1]
'Review: a gripping film'
>>> answer_class("Positive. The review praises the acting.", PROMPT_SETS["sst2_sentiment"].label_words)
1
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSet:
    """How an example becomes an instruction, and how the answer is scored."""

    name: str
    task: str
    template: str  # the user message; ``{text_a}`` and ``{text_b}`` are the example's fields
    max_new_tokens: int = 32
    label_words: tuple[tuple[str, ...], ...] = ()  # per class, the surface forms that name it
    reference: str | None = None  # frame column with a reference output (chrF), e.g. "text_a" (AG News title)

    @property
    def kind(self) -> str:
        return "label" if self.max_new_tokens == 1 else "generation"

    @property
    def quality_metric(self) -> str | None:
        if self.reference:
            return "chrf"
        return "answer_accuracy" if self.label_words else None

    def user_message(self, text_a: str, text_b: str | None) -> str:
        return self.template.format(text_a=text_a, text_b=text_b if text_b is not None else "")


PROMPT_SETS: dict[str, PromptSet] = {p.name: p for p in (
    PromptSet("agnews_headline", "agnews", "Write a short headline for this news story.\n\n{text_b}",
              max_new_tokens=24, reference="text_a"),
    PromptSet("sst2_sentiment", "sst2", "Is the sentiment of this movie review positive or negative? Answer with one "
              "word, then give a short reason.\n\nReview: {text_a}", max_new_tokens=32,
              label_words=(("negative", "Negative"), ("positive", "Positive"))),
    PromptSet("qnli_answer", "qnli", "Does the sentence answer the question? Answer yes or no, then give a short "
              "reason.\n\nQuestion: {text_a}\nSentence: {text_b}", max_new_tokens=32,
              label_words=(("yes", "Yes"), ("no", "No"))),
    PromptSet("sst2_label", "sst2", "Is the sentiment of this movie review positive or negative? Answer with one "
              "word.\n\nReview: {text_a}", max_new_tokens=1,
              label_words=(("negative", "Negative"), ("positive", "Positive"))),
    PromptSet("agnews_topic", "agnews", "What is the topic of this news story? Answer with one word: World, Sports, "
              "Business or Technology.\n\n{text_a}. {text_b}", max_new_tokens=1,
              label_words=(("World",), ("Sports",), ("Business",), ("Technology", "Science", "Tech"))),
)}


def get_prompt_set(name: str) -> PromptSet:
    try:
        return PROMPT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown prompt set {name!r}; choose one of {sorted(PROMPT_SETS)}") from None


def answer_class(text: str, label_words) -> int:
    """The class whose label word occurs first in ``text`` (whole words, any listed surface form); -1 if none."""
    best, where = -1, len(text) + 1
    for c, forms in enumerate(label_words):
        for w in forms:
            m = re.search(rf"\b{re.escape(w)}\b", text, flags=re.IGNORECASE)
            if m and m.start() < where:
                best, where = c, m.start()
    return best
