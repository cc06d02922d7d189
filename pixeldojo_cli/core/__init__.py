"""The bottom layer: errors, safe text, redaction, bounded decoding, durations.

Standard library only.
"""
