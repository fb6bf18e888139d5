"""XML signatures with the node's organisation certificate (xmlsec / libxmlsec1).

Used for the VIHF assertion (enveloped signature over the assertion, SAML 2.0 core 5.4) and the
IHE DSG signature document (enveloping, ITI TF-3 5.5). SHA-256 everywhere: the ANS sample still
shows rsa-sha1, which current validators reject for new signatures. The signature method follows
the key: RSA (the IGC-Santé organisation certificates) or ECDSA (the demo's test CA).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from drimbox.errors import ConfigError

__all__ = ["Signer", "verify_raw_signature"]


class Signer:
    """A private key and its certificate, ready to sign XML.

    Parameters
    ----------
    cert_pem:
        The signing certificate (PEM; the first certificate is the signer's).
    key_pem:
        Its private key (PEM, unencrypted).
    """

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.certificate = x509.load_pem_x509_certificate(cert_pem)
        private = serialization.load_pem_private_key(key_pem, password=None)
        if isinstance(private, rsa.RSAPrivateKey):
            self.sign_method = xmlsec.constants.TransformRsaSha256
            self.method_uri = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        elif isinstance(private, ec.EllipticCurvePrivateKey):
            self.sign_method = xmlsec.constants.TransformEcdsaSha256
            self.method_uri = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
        else:
            raise ConfigError("publish.signing_key_file: an RSA or EC private key is required")
        self._private = private
        self._key_pem = key_pem
        self._cert_pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path) -> Signer:
        """Load from PEM files (``ConfigError`` naming the file when one cannot be read)."""
        try:
            return cls(cert_file.read_bytes(), key_file.read_bytes())
        except OSError as exc:
            raise ConfigError(f"publish: cannot read signing material {exc.filename} ({exc.strerror})") from exc
        except ValueError as exc:
            raise ConfigError(f"publish: {cert_file} / {key_file}: not a PEM certificate and key ({exc})") from exc

    @property
    def subject(self) -> str:
        """The certificate subject as an X.509 subject name string (RFC 4514), for SAML ``Issuer``."""
        return self.certificate.subject.rfc4514_string()

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def template(self, *, signature_id: str | None = None) -> etree._Element:
        """An empty ``ds:Signature`` (exclusive C14N, this key's method) with the certificate in KeyInfo."""
        signature = xmlsec.template.create(
            etree.Element("placeholder"), xmlsec.constants.TransformExclC14N, self.sign_method, id=signature_id,
            ns="ds",
        )
        x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        xmlsec.template.x509_data_add_certificate(x509_data)
        return signature

    @staticmethod
    def add_reference(signature: etree._Element, uri: str, *, enveloped: bool = False,
                      type_: str | None = None) -> etree._Element:
        """Reference a same-document element (``#id``), SHA-256, exclusive C14N."""
        ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=uri, type=type_)
        if enveloped:
            xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        return ref

    def sign(self, signature: etree._Element, id_attributes: Sequence[tuple[etree._Element, str]]) -> None:
        """Compute every reference's digest and the signature value, in place.

        ``id_attributes`` names the elements that references point to and the attribute holding
        their id (``ID`` for SAML, ``Id`` for XML DSig and XAdES), so that ``#id`` resolves.
        """
        ctx = xmlsec.SignatureContext()
        key = xmlsec.Key.from_memory(self._key_pem, xmlsec.constants.KeyDataFormatPem, None)
        key.load_cert_from_memory(self._cert_pem, xmlsec.constants.KeyDataFormatCertPem)
        ctx.key = key
        for element, attribute in id_attributes:
            ctx.register_id(element, attribute)
        ctx.sign(signature)

    def raw_signature(self, data: bytes) -> bytes:
        """The XML DSig ``SignatureValue`` bytes of ``data`` with SHA-256.

        RSA: PKCS#1 v1.5 (RFC 3447 8.2). ECDSA: the raw ``r || s`` pair, each on the curve's size (RFC 4051
        3.3.1), not the DER form ``cryptography`` returns.
        """
        if isinstance(self._private, rsa.RSAPrivateKey):
            return self._private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        assert isinstance(self._private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(self._private.sign(data, ec.ECDSA(hashes.SHA256())))
        size = (self._private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def verify_raw_signature(certificate: x509.Certificate, method_uri: str, signature: bytes, data: bytes) -> None:
    """Check a ``SignatureValue`` made by :meth:`Signer.raw_signature` (``InvalidSignature`` if wrong)."""
    public = certificate.public_key()
    if method_uri.endswith("rsa-sha256") and isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif method_uri.endswith("ecdsa-sha256") and isinstance(public, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError(f"signature method {method_uri} does not match the certificate's key")
