"""A fake containerd for the hostile-daemon tests: a python3-grpcio server on a unix socket
that answers the few methods the agent calls with raw protobuf, as a broken or hostile
containerd would. A test passes its own replies; this module holds what they share:

    from fakectrd import ld, image, envelope, idle, serve
    serve(images=IMAGES, subscribe=my_stream)   # argv: SOCKET CALLS_LOG [ARGS...]

Every method called is appended to CALLS_LOG, one line each, as it arrives (tests wait on
it). A method the fake does not answer gets UNIMPLEMENTED, as from a containerd built
without that service (Content.Read: the agent judges the image without its config)."""
import sys
import time
from concurrent import futures

import grpc
from pbwire import ld, varint  # noqa: F401 (the tests import ld from here)

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def image(name, digest="sha256:" + "ab" * 32, media_type=MANIFEST):
    """containerd.services.images.v1.Image{name, target: Descriptor{media_type, digest}}."""
    return ld(1, name) + ld(3, ld(1, media_type) + ld(2, digest))


def envelope(topic, type_url, event, namespace="default"):
    """containerd.services.events.v1.Envelope{namespace, topic, event: Any{type_url, value}}."""
    return ld(2, namespace) + ld(3, topic) + ld(4, ld(1, type_url) + ld(2, event))


def image_create(name):
    return envelope("/images/create", "containerd.services.images.v1.ImageCreate", ld(1, name))


VERSION = ld(1, "1.6.20") + ld(2, "fake")  # VersionResponse{version, revision}
NAMESPACES = ld(1, ld(1, "default"))  # ListNamespacesResponse{[Namespace{name: "default"}]}


def idle(ctx):
    """Keep a stream open until the agent goes away."""
    while ctx.is_active():
        time.sleep(0.2)


def _idle_stream(req, ctx):
    idle(ctx)
    return iter(())


def serve(images=b"", namespaces=NAMESPACES, subscribe=_idle_stream, get=None, max_send=None):
    """Serve until killed. images: the Images.List reply; subscribe(req, ctx): the event
    stream (an iterable of Envelope bytes; the default stays open and sends nothing);
    get(req, ctx): the Images.Get reply (None: UNIMPLEMENTED)."""
    sock, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)
    replies = [
        ("/Subscribe", grpc.unary_stream_rpc_method_handler, subscribe),
        ("/Version", grpc.unary_unary_rpc_method_handler, lambda req, ctx: VERSION),
        ("Namespaces/List", grpc.unary_unary_rpc_method_handler, lambda req, ctx: namespaces),
        ("Images/List", grpc.unary_unary_rpc_method_handler, lambda req, ctx: images),
        ("Images/Get", grpc.unary_unary_rpc_method_handler, get),
        ("/List", grpc.unary_unary_rpc_method_handler, lambda req, ctx: b""),  # containers, ...
    ]

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            log.write(details.method + "\n")
            for suffix, kind, fn in replies:
                if details.method.endswith(suffix):
                    return kind(fn) if fn else None
            return None

    options = [("grpc.max_send_message_length", max_send)] if max_send else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Handler()], options=options)
    server.add_insecure_port("unix:" + sock)
    server.start()
    while True:
        time.sleep(3600)
