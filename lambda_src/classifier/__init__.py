"""Breast-ultrasound classifier serving code (LiteRT). Research use only, not a medical device."""
