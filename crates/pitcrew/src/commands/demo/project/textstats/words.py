"""Words of a text: splitting, counting, the most frequent and the longest."""

import re

_WORD = re.compile(r"[A-Za-z']+")


def words(text):
    """The words of `text`, lower-cased, in order."""
    return [word.lower() for word in _WORD.findall(text)]


def word_count(text):
    """How many words `text` has."""
    return len(words(text))


def most_common(text, n=3):
    """The `n` most frequent words with their counts, most frequent first; words used
    equally often keep the order in which they first appear."""
    if n < 1:
        raise ValueError("n must be at least 1")
    counts = {}
    for word in words(text):
        counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return ranked[:n]


def longest_word(text):
    """The longest word (the first one when several are as long), or None when `text` has
    no words."""
    found = words(text)
    if not found:
        return None
    return max(found, key=len)
