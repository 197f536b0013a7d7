package instrument

// CoalesceOnly exposes the data-segment rewrite alone to the tests.
var CoalesceOnly = coalesceOnly

// ImageOnly applies only the memory-image extraction to bin, with the
// checks Rewrite makes first: the module without its active data segments
// and their image, or bin unchanged and a nil image.
func ImageOnly(bin []byte) ([]byte, *Image, error) {
	if err := Check(bin, Limits{}); err != nil {
		return nil, nil, err
	}
	m, err := parse(bin)
	if err != nil {
		return nil, nil, err
	}
	if err := checkData(m); err != nil {
		return nil, nil, err
	}
	var img *Image
	out := append([]byte(nil), bin[:8]...)
	for _, s := range m.sections {
		body := s.body
		if s.id == secData {
			stripped, im, keep, ok := extractImage(m, body)
			if ok {
				img = im
				if !keep {
					continue
				}
				body = stripped
			}
		}
		out = appendSection(out, s.id, body)
	}
	return out, img, nil
}
