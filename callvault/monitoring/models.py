"""Monitoring: enrolment codes, devices, policy, activity spans, screenshots."""
