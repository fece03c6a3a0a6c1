package resolver

import (
	"context"
	"errors"

	"github.com/miekg/dns"
)

// EDEError is implemented by errors that know their Extended DNS Error
// (RFC 8914) code and text.
type EDEError interface {
	error
	EDE() (code uint16, text string)
}

// EDEFor picks the Extended DNS Error for a chain error.
func EDEFor(err error) (uint16, string) {
	var e EDEError
	switch {
	case errors.As(err, &e):
		return e.EDE()
	case errors.Is(err, ErrPanic), errors.Is(err, errNoReply):
		return dns.ExtendedErrorCodeOther, "internal error"
	case errors.Is(err, context.DeadlineExceeded):
		return dns.ExtendedErrorCodeNoReachableAuthority, "upstream timeout"
	}
	return dns.ExtendedErrorCodeNetworkError, "upstream unavailable"
}

// AddEDE adds an Extended DNS Error option to resp when the request carried
// EDNS0 (clients without EDNS0 cannot receive one). The Server's finish step
// keeps EDE options and replaces the rest of the OPT record.
func AddEDE(req, resp *dns.Msg, code uint16, text string) {
	if req.IsEdns0() == nil {
		return
	}
	opt := resp.IsEdns0()
	if opt == nil {
		opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(AdvertisedUDPSize)
		resp.Extra = append(resp.Extra, opt)
	}
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
}
