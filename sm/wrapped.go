package sm

import (
	"net"
	"reflect"
)

var netConnType = reflect.TypeFor[net.Conn]()

// wrapped returns the connection c wraps, nil if none is known: the one
// its NetConn method returns (*tls.Conn), or else its embedded net.Conn
// field. A wrapper's Write must have handed the bytes to the kernel when
// it returns (those on the client's stack do): a wrapper that holds writes
// in user space is told apart only while the socket's send queue is
// empty, and one that buffers while the queue holds other bytes leaves
// its <r/> outside the mark of progressLocked, which may then end a
// working connection.
func wrapped(c net.Conn) net.Conn {
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		return w.NetConn()
	}
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	f, ok := v.Type().FieldByName("Conn")
	if !ok || !f.Anonymous || len(f.Index) != 1 || f.Type != netConnType {
		return nil
	}
	inner, _ := v.FieldByIndex(f.Index).Interface().(net.Conn)
	return inner
}
