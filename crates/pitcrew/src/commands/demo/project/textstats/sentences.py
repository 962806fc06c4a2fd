"""Sentences of a text: splitting on `.`, `!` and `?`, counting, average length."""

import re

_END = re.compile(r"[.!?]+")


def sentences(text):
    """The sentences of `text`, stripped, without their final punctuation."""
    return [part.strip() for part in _END.split(text) if part.strip()]


def sentence_count(text):
    """How many sentences `text` has."""
    return len(sentences(text))


def average_sentence_length(text):
    """Words per sentence on average, rounded to one decimal; 0.0 when there is no
    sentence."""
    found = sentences(text)
    if not found:
        return 0.0
    total = sum(len(sentence.split()) for sentence in found)
    return round(total / len(found), 1)
