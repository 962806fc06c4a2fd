"""textstats: small statistics about English text (words, sentences, reading ease)."""
