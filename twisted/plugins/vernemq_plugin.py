from twisted.application.service import ServiceMaker

vernemq = ServiceMaker("VerneMQ", "vernemq.tap", "A clustered MQTT broker compatible with VerneMQ.", "vernemq")
