"""Cameras: recognise people walking past, one check-in per person and visit, attendance per shift.

``source`` (frames from a file, webcam or stream), ``watch`` (tracking, voting, events stored in the gallery
database), ``attendance`` (a roster against the stored check-ins).
"""
