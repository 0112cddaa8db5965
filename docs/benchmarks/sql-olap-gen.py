# The TPC-H-like data of `pydb-bench --sql` (benches/src/sql.rs, struct Tpch) at scale 0.01,
# same shapes and distributions, other random numbers, as SQL text on stdout:
#   python3 sql-olap-gen.py > tpch.sql && pydb sql --engine btree --dir DIR -f tpch.sql
import random
random.seed(1)
NATIONS=[("ALGERIA",0),("ARGENTINA",1),("BRAZIL",1),("CANADA",1),("EGYPT",4),("ETHIOPIA",0),("FRANCE",3),("GERMANY",3),("INDIA",2),("INDONESIA",2),("IRAN",4),("IRAQ",4),("JAPAN",2),("JORDAN",4),("KENYA",0),("MOROCCO",0),("MOZAMBIQUE",0),("PERU",1),("CHINA",2),("ROMANIA",3),("SAUDI ARABIA",4),("VIETNAM",2),("RUSSIA",3),("UNITED KINGDOM",3),("UNITED STATES",1)]
REGIONS=["AFRICA","AMERICA","ASIA","EUROPE","MIDDLE EAST"]
SEG=["AUTOMOBILE","BUILDING","FURNITURE","HOUSEHOLD","MACHINERY"]
sc=0.01
C=int(150000*sc); O=int(1500000*sc); S=int(10000*sc)
out=[]
out+=["CREATE TABLE region (r_regionkey INTEGER PRIMARY KEY, r_name TEXT);",
"CREATE TABLE nation (n_nationkey INTEGER PRIMARY KEY, n_name TEXT, n_regionkey INTEGER);",
"CREATE TABLE supplier (s_suppkey INTEGER PRIMARY KEY, s_name TEXT, s_nationkey INTEGER);",
"CREATE TABLE customer (c_custkey INTEGER PRIMARY KEY, c_name TEXT, c_nationkey INTEGER, c_mktsegment TEXT);",
"CREATE TABLE orders (o_orderkey INTEGER PRIMARY KEY, o_custkey INTEGER, o_totalprice REAL, o_orderdate INTEGER, o_shippriority INTEGER);",
"CREATE TABLE lineitem (l_id INTEGER PRIMARY KEY, l_orderkey INTEGER, l_suppkey INTEGER, l_quantity INTEGER, l_extendedprice REAL, l_discount REAL, l_tax REAL, l_returnflag TEXT, l_linestatus TEXT, l_shipdate INTEGER);",
"BEGIN;"]
for i,r in enumerate(REGIONS): out.append(f"INSERT INTO region VALUES ({i}, '{r}');")
for i,(n,r) in enumerate(NATIONS): out.append(f"INSERT INTO nation VALUES ({i}, '{n}', {r});")
for s in range(S): out.append(f"INSERT INTO supplier VALUES ({s}, 'Supplier#{s:09}', {random.randrange(25)});")
for c in range(C): out.append(f"INSERT INTO customer VALUES ({c}, 'Customer#{c:09}', {random.randrange(25)}, '{random.choice(SEG)}');")
lid=0
for o in range(O):
    cu=random.randrange(C); d=random.randint(0,2405); pr=random.randrange(5); tot=0.0; lines=[]
    for _ in range(random.randint(1,7)):
        s=random.randrange(S); q=random.randint(1,50); p=float(q*random.randint(900,2000)); di=random.randint(0,10)/100; t=random.randint(0,8)/100; sh=d+random.randint(1,121)
        if sh<=1263: f,st=(random.choice("RA"),"F")
        else: f,st=("N","O")
        tot+=p*(1-di)*(1+t)
        lines.append(f"INSERT INTO lineitem VALUES ({lid}, {o}, {s}, {q}, {p:.2f}, {di:.2f}, {t:.2f}, '{f}', '{st}', {sh});"); lid+=1
    out.append(f"INSERT INTO orders VALUES ({o}, {cu}, {tot:.2f}, {d}, {pr});"); out+=lines
out.append("COMMIT;")
print("\n".join(out))
