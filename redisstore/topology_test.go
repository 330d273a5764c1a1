package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// Besides a single node (FORTEAUTH_REDIS_ADDR), the tests run against a
// 3-master Redis Cluster and a master/replica pair watched by 3 Sentinels:
//
//   - FORTEAUTH_REDIS_CLUSTER_ADDRS (a comma list of the masters) and
//     FORTEAUTH_REDIS_SENTINEL_ADDRS (a comma list of the Sentinels) with
//     FORTEAUTH_REDIS_SENTINEL_MASTER (the name they watch), if set, are
//     the shared topologies (.ci/redis starts them and sets these);
//   - else the first test that needs one starts it, on free loopback ports,
//     and TestMain stops it at the end.
//
// Tests that kill or restart a node start a private topology of their own
// instead, so that no other test sees the fault, and so that they can run
// in parallel with the rest.
const (
	envClusterAddrs   = "FORTEAUTH_REDIS_CLUSTER_ADDRS"
	envSentinelAddrs  = "FORTEAUTH_REDIS_SENTINEL_ADDRS"
	envSentinelMaster = "FORTEAUTH_REDIS_SENTINEL_MASTER"
)

// Sentinel settings low enough that a failover completes in a few seconds
// (the default down-after is 30 s): the master is deemed down after 2 s
// without an answer, and a failover that stalls is retried after 2 × 3 s.
// With 2 s, a failover takes about 3 s, longer than a refresh interval of
// the fleet tests' 2 s tokens plus the 1 s store timeout, so that at least
// one refresh meets the dead master.
const (
	sentinelMaster     = "forteauth"
	sentinelDownAfter  = "2000"
	sentinelFailover   = "3000"
	clusterNodeTimeout = "1000" // a Cluster node not answering for 1 s is failed
)

// topologyTimeout bounds the start of a topology: a Cluster's nodes
// agreeing on the slots, Sentinels finding each other and the replica.
const topologyTimeout = 30 * time.Second

// shared holds the topologies started for the whole test binary, which
// TestMain stops at the end.
var shared struct {
	mu    sync.Mutex
	stops []func()
}

func stopSharedTopologies() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, stop := range shared.stops {
		stop()
	}
	shared.stops = nil
}

// startShared starts a topology for the test binary in a directory of its
// own, to be stopped by stopSharedTopologies.
func startShared[T any](launch func(dir string) (T, func(), error)) (T, error) {
	var zero T
	dir, err := os.MkdirTemp("", "redisstore-test-")
	if err != nil {
		return zero, err
	}
	v, stop, err := launch(dir)
	if err != nil {
		os.RemoveAll(dir)
		return zero, err
	}
	shared.mu.Lock()
	shared.stops = append(shared.stops, func() { stop(); os.RemoveAll(dir) })
	shared.mu.Unlock()
	return v, nil
}

var (
	sharedClusterOnce = sync.OnceValues(func() ([]string, error) {
		return startShared(func(dir string) ([]string, func(), error) {
			c, err := launchCluster(dir, 3)
			if err != nil {
				return nil, nil, err
			}
			return c.addrs(), c.stop, nil
		})
	})
	sharedSentinelOnce = sync.OnceValues(func() ([]string, error) {
		return startShared(func(dir string) ([]string, func(), error) {
			s, err := launchSentinel(dir)
			if err != nil {
				return nil, nil, err
			}
			return s.sentinelAddrs(), s.stop, nil
		})
	})
)

// clusterAddrs returns the addresses of the shared Redis Cluster's masters.
func clusterAddrs(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv(envClusterAddrs); v != "" {
		return strings.Split(v, ",")
	}
	needRedisServer(t)
	addrs, err := sharedClusterOnce()
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// sentinelAddrs returns the shared Sentinels' addresses and the name of the
// master they watch.
func sentinelAddrs(t testing.TB) (addrs []string, master string) {
	t.Helper()
	if v := os.Getenv(envSentinelAddrs); v != "" {
		master = os.Getenv(envSentinelMaster)
		if master == "" {
			t.Fatalf("%s is set but %s is not", envSentinelAddrs, envSentinelMaster)
		}
		return strings.Split(v, ","), master
	}
	needRedisServer(t)
	addrs, err := sharedSentinelOnce()
	if err != nil {
		t.Fatal(err)
	}
	return addrs, sentinelMaster
}

// newClusterClient returns a Cluster client for addrs with the default
// options, closed at the end of t.
func newClusterClient(t testing.TB, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	return c
}

// newFailoverClient returns a Sentinel-backed client for master with the
// default options, closed at the end of t.
func newFailoverClient(t testing.TB, sentinels []string, master string) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: sentinels})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisCluster is a Redis Cluster of masters without replicas that this
// test binary started.
type redisCluster struct {
	nodes []*redisProcess
}

// launchCluster starts n cluster-enabled redis-servers on free loopback
// ports, gives each an equal share of the 16384 slots, introduces them to
// each other (as redis-cli --cluster create does) and waits until every
// node reports cluster_state:ok.
func launchCluster(dir string, n int, extra ...string) (*redisCluster, error) {
	c := &redisCluster{}
	for i := range n {
		// Each node keeps its cluster state in a file of its own, so that
		// a restarted node rejoins with its ID and slots.
		args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i),
			"--cluster-node-timeout", clusterNodeTimeout}, extra...)
		var r *redisProcess
		var err error
		for range 3 { // as in launchRedis: a free port can be taken before redis-server binds it
			var port int
			if port, err = freeClusterPort(); err == nil {
				if r, err = launchRedis(dir, port, args...); err == nil {
					break
				}
			}
		}
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("starting Cluster node %d: %w", i, err)
		}
		c.nodes = append(c.nodes, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	err := func() error {
		for i, r := range c.nodes {
			rdb := redis.NewClient(&redis.Options{Addr: r.addr})
			defer rdb.Close()
			lo, hi := i*16384/n, (i+1)*16384/n-1
			if err := rdb.Do(ctx, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
				return fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, r.addr, err)
			}
			if i > 0 {
				if err := rdb.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.nodes[0].port)).Err(); err != nil {
					return fmt.Errorf("CLUSTER MEET from %s: %w", r.addr, err)
				}
			}
		}
		return c.waitOK(ctx)
	}()
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// freeClusterPort returns a free loopback port p whose Cluster bus port,
// p + 10000, is free too and below 65536.
func freeClusterPort() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return p, nil
	}
	return 0, errors.New("no free port p with p + 10000 free for the Cluster bus")
}

// waitOK waits until every node knows every other and reports
// cluster_state:ok.
func (c *redisCluster) waitOK(ctx context.Context) error {
	want := fmt.Sprintf("cluster_known_nodes:%d", len(c.nodes))
	for _, r := range c.nodes {
		rdb := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
		var info string
		for !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
			if ctx.Err() != nil {
				rdb.Close()
				return fmt.Errorf("the Cluster node %s did not report cluster_state:ok with %s; CLUSTER INFO:\n%s", r.addr, want, info)
			}
			time.Sleep(50 * time.Millisecond)
			info, _ = rdb.ClusterInfo(ctx).Result()
		}
		rdb.Close()
	}
	return nil
}

func (c *redisCluster) addrs() []string {
	var a []string
	for _, r := range c.nodes {
		a = append(a, r.addr)
	}
	return a
}

func (c *redisCluster) stop() {
	for _, r := range c.nodes {
		r.stop()
	}
}

// node returns the node listening on addr.
func (c *redisCluster) node(addr string) *redisProcess {
	for _, r := range c.nodes {
		if r.addr == addr {
			return r
		}
	}
	return nil
}

// privateCluster starts a 3-master Cluster for t alone, stopped at its end.
func privateCluster(t testing.TB, extra ...string) *redisCluster {
	t.Helper()
	needRedisServer(t)
	c, err := launchCluster(t.TempDir(), 3, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	return c
}

// redisSentinel is a master, its replica and 3 Sentinels watching them,
// that this test binary started.
type redisSentinel struct {
	master, replica *redisProcess
	sentinels       []*redisProcess
}

// launchSentinel starts a master, a replica of it, and 3 Sentinels that
// watch the master as sentinelMaster with a quorum of 2, and waits until
// the replica is in sync and every Sentinel knows the replica and the
// other two Sentinels, so that a failover can be voted on.
func launchSentinel(dir string) (*redisSentinel, error) {
	s := &redisSentinel{}
	var err error
	// The default waits 5 s for more replicas before the first sync.
	if s.master, err = launchRedis(dir, 0, "--repl-diskless-sync-delay", "0"); err != nil {
		return nil, fmt.Errorf("starting the master: %w", err)
	}
	if s.replica, err = launchRedis(dir, 0, "--replicaof", "127.0.0.1", strconv.Itoa(s.master.port)); err != nil {
		s.stop()
		return nil, fmt.Errorf("starting the replica: %w", err)
	}
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		// A Sentinel rewrites its configuration file, so each needs one.
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s %[3]s\n"+
			"sentinel failover-timeout %[1]s %[4]s\n"+
			"sentinel parallel-syncs %[1]s 1\n", sentinelMaster, s.master.port, sentinelDownAfter, sentinelFailover)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			s.stop()
			return nil, err
		}
		r, err := launchRedisConf(dir, conf, "--sentinel")
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("starting Sentinel %d: %w", i, err)
		}
		s.sentinels = append(s.sentinels, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady waits until the replica is in sync with the master and each
// Sentinel sees the master up, its replica and 2 other Sentinels.
func (s *redisSentinel) waitReady(ctx context.Context) error {
	rep := redis.NewClient(&redis.Options{Addr: s.replica.addr})
	defer rep.Close()
	var info string
	for !strings.Contains(info, "master_link_status:up") {
		if ctx.Err() != nil {
			return fmt.Errorf("the replica %s did not sync with the master %s; INFO replication:\n%s", s.replica.addr, s.master.addr, info)
		}
		time.Sleep(50 * time.Millisecond)
		info, _ = rep.Info(ctx, "replication").Result()
	}
	for _, r := range s.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: r.addr})
		var m map[string]string
		for m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
			if ctx.Err() != nil {
				sc.Close()
				return fmt.Errorf("the Sentinel %s does not see the master up with 1 replica and 2 other Sentinels: SENTINEL MASTER %s: %v", r.addr, sentinelMaster, m)
			}
			time.Sleep(50 * time.Millisecond)
			m, _ = sc.Master(ctx, sentinelMaster).Result()
		}
		sc.Close()
	}
	return nil
}

func (s *redisSentinel) sentinelAddrs() []string {
	var a []string
	for _, r := range s.sentinels {
		a = append(a, r.addr)
	}
	return a
}

// waitPromoted waits until every Sentinel names the replica as the master
// and the replica reports role:master, and returns how long after killed
// that was.
func (s *redisSentinel) waitPromoted(t testing.TB, killed time.Time) time.Duration {
	t.Helper()
	want := s.replica.addr
	eventually(t, topologyTimeout, "the Sentinels to promote the replica "+want, func() bool {
		for _, r := range s.sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
			hp, err := sc.GetMasterAddrByName(context.Background(), sentinelMaster).Result()
			sc.Close()
			if err != nil || len(hp) != 2 || hp[0]+":"+hp[1] != want {
				return false
			}
		}
		rep := redis.NewClient(&redis.Options{Addr: want, MaxRetries: -1})
		defer rep.Close()
		info, _ := rep.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "role:master")
	})
	return time.Since(killed)
}

func (s *redisSentinel) stop() {
	for _, r := range s.sentinels {
		r.stop()
	}
	for _, r := range []*redisProcess{s.replica, s.master} {
		if r != nil {
			r.stop()
		}
	}
}

// privateSentinel starts a master, a replica and 3 Sentinels for t alone,
// stopped at its end.
func privateSentinel(t testing.TB) *redisSentinel {
	t.Helper()
	needRedisServer(t)
	s, err := launchSentinel(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// TestTopologiesAnswer checks the shared topologies themselves: the
// Cluster holds every slot on 3 masters and the Sentinels name a master
// that has a replica, so that the fleet tests on them test what they say.
func TestTopologiesAnswer(t *testing.T) {
	ctx := context.Background()
	cc := newClusterClient(t, clusterAddrs(t))
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	covered, masters := 0, 0
	for _, sh := range shards {
		for _, r := range sh.Slots {
			covered += int(r.End - r.Start + 1)
		}
		if len(sh.Slots) > 0 {
			masters++
		}
	}
	if covered != 16384 || masters != 3 {
		t.Errorf("the Cluster's slots: %d of 16384 covered, by %d masters; want all, by 3", covered, masters)
	}

	addrs, master := sentinelAddrs(t)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addrs[0]})
	defer sc.Close()
	m, err := sc.Master(ctx, master).Result()
	if err != nil {
		t.Fatal(err)
	}
	if m["flags"] != "master" || m["num-slaves"] == "0" || m["num-other-sentinels"] != strconv.Itoa(len(addrs)-1) {
		t.Errorf("SENTINEL MASTER %s on %s: flags %q, %s replicas, %s other Sentinels; want a master with a replica, known to all %d Sentinels",
			master, addrs[0], m["flags"], m["num-slaves"], m["num-other-sentinels"], len(addrs))
	}
	if err := redisstore.New(newFailoverClient(t, addrs, master)).Set(ctx, "forteauth:test:"+randomHex(8), []byte("x"), time.Minute); err != nil {
		t.Errorf("SET through the Sentinels' master: %v", err)
	}
}
