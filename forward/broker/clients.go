package broker

// Clients is how many MQTT clients are connected to the embedded broker
// now (edgesink's own output included).
func (b *Broker) Clients() int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if !cl.Closed() {
			n++
		}
	}
	return n
}
