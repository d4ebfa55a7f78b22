from tests.brokers import MosquittoBroker


def test_mosquitto_starts_and_restarts(mosquitto: MosquittoBroker) -> None:
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    assert mosquitto.process is not None
    assert mosquitto.process.poll() is None
