"""cis490: a serverless training fleet for a behavioural malware detector.

Subpackages: ``fleet`` (the spool coordinator; imports without the heavy
training stack), ``data``, ``models``, ``train``, ``evaluate``.
"""

__version__ = "0.1.0"
