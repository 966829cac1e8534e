"""The instructor side of the course: labs built from solutions, Colab cells, grading."""
