"""The python jobs of the nightly run: exam readiness and gap recommendations."""
