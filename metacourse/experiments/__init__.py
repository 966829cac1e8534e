"""Registered experiments, one module per part of the course (see ``metacourse.reproduce``)."""
