#!/usr/bin/perl
# vzlibvirt hook client: hands one hook call to the agent over its UNIX socket.
#
# Why Perl: libvirt runs the hook synchronously five times per guest life, and the
# client's start is most of the cost. perl-base is Essential on Debian and starts in
# ~2 ms with builtins only; Python starts in ~8 ms even with -S. This file uses no
# module at all (the socket calls are builtins). When no agent answers the connect,
# it runs the Python client (which runs the engine in-process), so hosts without the
# agent still work. Wire format: netstrings, request [hook, env, argv..., xml], reply
# [rc, stderr, stdout]; see vzlibvirt/hookclient.py, the reference implementation.
#
# usage: hookclient.pl PYTHON PYCLIENT DRIVER OBJECT OPERATION SUBOP EXTRA  (XML on stdin)

# vzlibvirt/contract.py's values, here and nowhere else in this file
# (tests/unit/test_contract.py fails when they differ)
my $SOCKET_ENV = 'VZLIBVIRT_AGENT_SOCKET';
my $DEFAULT_SOCKET = '/run/vzlibvirt/agent.sock';
my $NO_AGENT = 'none';
my @FORWARDED_ENV = qw(VZLIBVIRT_DOMAIN_UUID VZLIBVIRT_STATE_DIR);
my $TIMEOUT = 120;

$SIG{PIPE} = 'IGNORE';
my $python = shift @ARGV;
my $pyclient = shift @ARGV;
binmode STDIN; binmode STDOUT; binmode STDERR;
my $data = do { local $/; <STDIN> };
$data = '' unless defined $data;
my $name = defined $ARGV[1] ? $ARGV[1] : '?';
my $path = defined $ENV{$SOCKET_ENV} ? $ENV{$SOCKET_ENV} : $DEFAULT_SOCKET;

sub netstrings { return join '', map { length($_) . ':' . $_ . ',' } @_; }

sub fail {
    print STDERR "vzlibvirt: domain '$name': the agent at $path failed: $_[0]\n";
    exit 1;
}

if ($path ne $NO_AGENT && socket(my $sock, 1, 1, 0)) {    # AF_UNIX, SOCK_STREAM
    if (connect($sock, pack('S', 1) . $path . "\0")) {
        $SIG{ALRM} = sub { fail("no answer in $TIMEOUT s") };
        alarm $TIMEOUT;
        my @env = map { "$_=$ENV{$_}" } grep { defined $ENV{$_} } @FORWARDED_ENV;
        my $request = netstrings('hook', join("\0", @env), @ARGV, $data);
        while (length $request) {
            my $n = syswrite($sock, $request);
            fail("write: $!") unless defined $n;
            substr($request, 0, $n) = '';
        }
        shutdown($sock, 1);
        my ($reply, $chunk) = ('', '');
        while (1) {
            my $n = sysread($sock, $chunk, 65536);
            fail("read: $!") unless defined $n;
            last if $n == 0;
            $reply .= $chunk;
        }
        my @fields;
        my $pos = 0;
        while ($pos < length $reply) {
            my $colon = index($reply, ':', $pos);
            fail('bad reply') if $colon < 0;
            my $len = substr($reply, $pos, $colon - $pos);
            fail('bad reply') unless $len =~ /^[0-9]+$/;
            push @fields, substr($reply, $colon + 1, $len);
            fail('bad reply') unless substr($reply, $colon + 1 + $len, 1) eq ',';
            $pos = $colon + 2 + $len;
        }
        fail('the agent closed the connection') unless @fields == 3;
        print STDOUT $fields[2];
        print STDERR $fields[1];
        exit($fields[0] =~ /^[0-9]+$/ ? $fields[0] : 1);
    }
}

# no agent: the Python client runs the engine in this call, reading the same XML
$ENV{$SOCKET_ENV} = $NO_AGENT;
pipe(my $from, my $to) or fail("pipe: $!");
my $pid = fork();
fail("fork: $!") unless defined $pid;
if ($pid == 0) {
    close $to;
    open(STDIN, '<&', $from) or exit 127;
    exec { $python } $python, '-S', '-E', $pyclient, @ARGV;
    print STDERR "vzlibvirt: domain '$name': cannot run $python: $!\n";
    exit 127;
}
close $from;
while (length $data) {    # a child that exits without reading is fine: its status counts
    my $n = syswrite($to, $data);
    last unless defined $n;
    substr($data, 0, $n) = '';
}
close $to;
waitpid($pid, 0);
exit($? & 127 ? 1 : $? >> 8);
