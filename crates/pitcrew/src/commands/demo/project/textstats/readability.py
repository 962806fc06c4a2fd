"""How easy a text is to read: the Flesch reading-ease score and its label."""

from textstats.sentences import sentence_count
from textstats.words import words


def syllables(word):
    """Syllables of `word`, estimated: groups of vowels (y counts), less a silent final
    e; at least 1."""
    word = word.lower()
    groups = 0
    previous_vowel = False
    for char in word:
        vowel = char in "aeiouy"
        if vowel and not previous_vowel:
            groups += 1
        previous_vowel = vowel
    if word.endswith("e") and groups > 1:
        groups -= 1
    return max(groups, 1)


def reading_ease(text):
    """The Flesch reading-ease score of `text`, rounded to one decimal (higher is easier),
    or None when it has no words."""
    found = words(text)
    count = sentence_count(text)
    if not found or count == 0:
        return None
    words_per_sentence = len(found) / count
    syllables_per_word = sum(syllables(word) for word in found) / len(found)
    return round(206.835 - 1.015 * words_per_sentence - 84.6 * syllables_per_word, 1)


def grade(score):
    """A label for a reading-ease score."""
    if score >= 90:
        return "very easy"
    if score >= 60:
        return "standard"
    if score >= 30:
        return "difficult"
    return "very difficult"
