package serial

// IsOpen tells whether the device is open now (it is opened on the first
// alert and closed after a write error). A write in progress counts as open.
func (p *Port) IsOpen() bool {
	select {
	case port := <-p.slot:
		p.slot <- port
		return port != nil
	default:
		return true // a write holds it
	}
}
