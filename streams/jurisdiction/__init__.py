"""The jurisdiction profile: who the deployment serves, in which time zone, within which boundary, with which named places.

One TOML file (``WF_PROFILE``; layout in ``docs/jurisdiction.md``) read by
:func:`load_profile`; :func:`default_profile` is what runs without one.
Pure: no Kafka, Redis or network.
"""

from streams.jurisdiction.areas import Areas
from streams.jurisdiction.profile import Profile, ProfileError, SpecialDay, default_profile, load_profile

__all__ = ["Areas", "Profile", "ProfileError", "SpecialDay", "default_profile", "load_profile"]
